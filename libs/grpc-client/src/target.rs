//! [`ClientTarget`]: where a service's client sends its calls — a remote peer
//! through its generated tonic client, or this process's own service through
//! its gRPC trait — and the one `match` between the two, so that a client
//! (the store-gateway's, the ingester's) writes each call once, as the pair of
//! calls it is, instead of repeating the dispatch, the span and the tenant
//! metadata in every method.

use std::future::Future;

use futures::Stream;
use strata_status::ServiceError;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::peer::{in_process, ClientOptions, Peer};

/// How a call is named in its client span (`store_gateway.label_names`),
/// and how many series it sends where that is worth recording (a push).
#[derive(Debug, Clone, Copy)]
pub struct CallSpan {
    name: &'static str,
    series: Option<usize>,
}

impl CallSpan {
    /// A call named `name`, with no series count.
    pub fn new(name: &'static str) -> Self {
        Self { name, series: None }
    }

    /// The same call, recording that it sends `series` series.
    pub fn with_series(self, series: usize) -> Self {
        Self {
            series: Some(series),
            ..self
        }
    }

    fn open(self, peer: &Peer) -> tracing::Span {
        let span = peer.span(self.name);
        if let Some(series) = self.series {
            span.record("series", series);
        }
        span
    }
}

impl From<&'static str> for CallSpan {
    fn from(name: &'static str) -> Self {
        Self::new(name)
    }
}

/// One peer's calls: `Remote` through the generated client `R` (connecting
/// on first use, re-connected by tonic after failures), or `InProcess`
/// through the service `L` itself. Cheap to clone when `R` and `L` are.
#[derive(Debug, Clone)]
pub enum ClientTarget<R, L> {
    Remote { peer: Peer, client: R },
    InProcess(L),
}

impl<R: Clone, L> ClientTarget<R, L> {
    /// The `kind` peer (`store-gateway`) at `address` (`host:port` or a
    /// URI), its generated client made by `client` over a channel that
    /// connects on first use. Must be called inside a Tokio runtime.
    pub fn remote(
        kind: &'static str,
        address: &str,
        options: &ClientOptions,
        client: impl FnOnce(Channel) -> R,
    ) -> Result<Self, ServiceError> {
        let (peer, channel) = Peer::connect_lazy(kind, address, options)?;
        Ok(Self::Remote {
            peer,
            client: client(channel),
        })
    }

    /// One unary call, named by `span` (`store_gateway.label_names`, or a
    /// [`CallSpan`]) in its client span when remote: `remote` sends it with a clone of the
    /// generated client, `local` hands it to the service.
    pub async fn unary<'a, Req, Resp, RemoteCall, LocalCall>(
        &'a self,
        span: impl Into<CallSpan>,
        tenant: &str,
        message: Req,
        remote: impl FnOnce(R, Request<Req>) -> RemoteCall,
        local: impl FnOnce(&'a L, Request<Req>) -> LocalCall,
    ) -> Result<Resp, ServiceError>
    where
        RemoteCall: Future<Output = Result<Response<Resp>, Status>>,
        LocalCall: Future<Output = Result<Response<Resp>, Status>>,
    {
        match self {
            ClientTarget::Remote { peer, client } => {
                let client = client.clone();
                peer.unary(span.into().open(peer), tenant, message, |r| {
                    remote(client, r)
                })
                .await
            }
            ClientTarget::InProcess(service) => {
                in_process::unary(tenant, message, |r| local(service, r)).await
            }
        }
    }

    /// One server-streaming call, as [`ClientTarget::unary`]: every item
    /// `items` takes out of the batches, in order, or the first error.
    pub async fn server_stream<'a, Req, M, T, RemoteStream, LocalStream, RemoteCall, LocalCall>(
        &'a self,
        span: impl Into<CallSpan>,
        tenant: &str,
        message: Req,
        remote: impl FnOnce(R, Request<Req>) -> RemoteCall,
        local: impl FnOnce(&'a L, Request<Req>) -> LocalCall,
        items: impl Fn(M) -> Vec<T>,
    ) -> Result<Vec<T>, ServiceError>
    where
        RemoteCall: Future<Output = Result<Response<RemoteStream>, Status>>,
        LocalCall: Future<Output = Result<Response<LocalStream>, Status>>,
        RemoteStream: Stream<Item = Result<M, Status>> + Unpin,
        LocalStream: Stream<Item = Result<M, Status>> + Unpin,
    {
        match self {
            ClientTarget::Remote { peer, client } => {
                let client = client.clone();
                peer.server_stream(
                    span.into().open(peer),
                    tenant,
                    message,
                    |r| remote(client, r),
                    items,
                )
                .await
            }
            ClientTarget::InProcess(service) => {
                in_process::server_stream(tenant, message, |r| local(service, r), items).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A service answering with the tenant its request carried.
    #[derive(Debug)]
    struct Echo;

    impl Echo {
        async fn whoami(&self, request: Request<u8>) -> Result<Response<String>, Status> {
            strata_proto::request_tenant(&request).map(Response::new)
        }
    }

    #[tokio::test]
    async fn in_process_calls_carry_the_tenant_remote_errors_name_the_peer() {
        let local: ClientTarget<(), Echo> = ClientTarget::InProcess(Echo);
        let remote_unused = |_: (), _: Request<u8>| async { Err(Status::internal("not remote")) };
        let answer = local
            .unary("echo.whoami", "team-a", 0, remote_unused, |s, r| {
                s.whoami(r)
            })
            .await;
        assert_eq!(answer, Ok("team-a".to_string()));

        let options = ClientOptions {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_recv_message_size: 1 << 20,
        };
        let remote: ClientTarget<(), Echo> =
            ClientTarget::remote("echo", "10.0.0.1:9095", &options, |_channel| ()).unwrap();
        let down = |_: (), _: Request<u8>| async { Err(Status::unavailable("connection refused")) };
        let err = remote
            .unary("echo.whoami", "team-a", 0, down, |s, r| s.whoami(r))
            .await
            .unwrap_err();
        assert_eq!(err.message, "echo 10.0.0.1:9095: connection refused");
    }
}
