//! OpenTelemetry tracing across processes: a distributor and three ingesters
//! (RF=3 over etcd) export spans over OTLP/gRPC to a small collector in this
//! test; one push must be one trace, the ingesters' server spans children of
//! the distributor's client spans.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use strata_integration::{
    encode_write_request, eventually, now_ms, push_raw, write_request, Etcd, Strata,
};

/// One received span, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a free loopback port; returns the endpoint for `-tracing.otlp_endpoint`.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().clone()
    }
}

async fn start(target: &str, service: &str, extra: &[String], etcd: &Etcd, otlp: &str) -> Strata {
    let mut args = vec![format!("-target={target}")];
    args.extend(etcd.ring_flags(3, 16));
    args.push(format!("-tracing.otlp_endpoint={otlp}"));
    args.push(format!("-tracing.service_name={service}"));
    args.extend(extra.iter().cloned());
    Strata::start_with_flags(&args).await
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_is_one_trace_across_distributor_and_ingesters() {
    // Export each batch within 100 ms rather than the default 5 s. The strata
    // processes inherit it; this test binary has no other test to disturb.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let collector = Collector::default();
    let otlp = collector.start().await;
    let etcd = Etcd::start().await;

    let mut ingesters = Vec::new();
    for i in 1..=3 {
        let id = format!("ingester-{i}");
        let extra = [format!("-ingester.ring.instance_id={id}")];
        ingesters.push(start("ingester", &format!("strata-{id}"), &extra, &etcd, &otlp).await);
    }
    let distributor = start("distributor", "strata-distributor", &[], &etcd, &otlp).await;

    // A push is accepted once the distributor sees all three ingesters.
    let labels = [("__name__", "tracing_test_total"), ("job", "t")];
    let push = || async {
        let samples = [(now_ms(), 1.0)];
        let body = encode_write_request(&write_request(&[(&labels[..], &samples[..])]));
        push_raw(&distributor.url("/api/v1/push"), Some("team-a"), body).await
    };
    eventually(
        "the distributor to see three ACTIVE ingesters",
        Duration::from_secs(30),
        || async { (distributor.active_ingesters().await? == 3).then_some(()) },
    )
    .await;
    let (status, message) = push().await;
    assert_eq!(status, 200, "push failed: {message}");

    // The push's trace: its distributor span, a client span per replica and a
    // server span in each ingester (the third replica may answer after the
    // quorum, so wait for all of them).
    let (root, spans) = eventually(
        "the spans of the push from the distributor and all three ingesters",
        Duration::from_secs(20),
        || async {
            let spans = collector.spans();
            let root = spans
                .iter()
                .find(|s| s.name == "distributor.push" && s.service == "strata-distributor")?
                .clone();
            let in_trace: Vec<ReceivedSpan> = spans
                .into_iter()
                .filter(|s| s.trace_id == root.trace_id)
                .collect();
            let servers = in_trace
                .iter()
                .filter(|s| s.name == "ingester.Push")
                .count();
            (servers == 3).then_some((root, in_trace))
        },
    )
    .await;
    let summary: Vec<String> = spans
        .iter()
        .map(|s| format!("{} {} {}", s.service, s.name, hex(&s.span_id)))
        .collect();

    assert!(root.parent_span_id.is_empty(), "{summary:?}");
    let clients: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "ingester.push").collect();
    assert_eq!(clients.len(), 3, "one client span per replica: {summary:?}");
    for client in &clients {
        assert_eq!(client.service, "strata-distributor", "{summary:?}");
        assert_eq!(client.parent_span_id, root.span_id, "{summary:?}");
    }
    let mut services = Vec::new();
    for server in spans.iter().filter(|s| s.name == "ingester.Push") {
        assert!(
            server.service.starts_with("strata-ingester-"),
            "{summary:?}"
        );
        assert!(
            clients.iter().any(|c| c.span_id == server.parent_span_id),
            "ingester span {} of {} is not a child of a distributor client span: {summary:?}",
            hex(&server.span_id),
            server.service
        );
        services.push(server.service.clone());
    }
    services.sort();
    assert_eq!(
        services,
        [
            "strata-ingester-1",
            "strata-ingester-2",
            "strata-ingester-3"
        ],
        "{summary:?}"
    );
    drop(ingesters);
}
