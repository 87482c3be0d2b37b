//! `GET /ingester/ring` (and `/store-gateway/ring`): a ring for people (HTML) and tools (JSON
//! with `Accept: application/json`), and `POST /ingester/ring` with
//! `forget=<instance id>` to remove an instance that will not come back. Also
//! the ring's gauges on `/metrics`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::{now_secs, InstanceDesc, Ring};
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

/// One row of the page.
#[derive(Debug, Serialize)]
struct InstanceRow {
    id: String,
    addr: String,
    zone: String,
    state: String,
    healthy: bool,
    tokens: Vec<u32>,
    /// Share of the token space this instance owns, in percent.
    ownership_percent: f64,
    registered_timestamp: i64,
    heartbeat_timestamp: i64,
    heartbeat_age_seconds: i64,
}

#[derive(Debug, Deserialize)]
struct ForgetForm {
    forget: String,
}

#[derive(Clone)]
struct PageState {
    ring: Ring,
    heartbeat_timeout_secs: u64,
}

pub fn router(ring: Ring, heartbeat_timeout: Duration) -> Router {
    router_at("/ingester/ring", ring, heartbeat_timeout)
}

/// The same page for another ring, at `path` (`/store-gateway/ring`).
pub fn router_at(path: &str, ring: Ring, heartbeat_timeout: Duration) -> Router {
    Router::new()
        .route(path, get(show).post(forget))
        .with_state(PageState {
            ring,
            heartbeat_timeout_secs: heartbeat_timeout.as_secs(),
        })
}

/// Fraction of the 2^32 token space each instance owns: a key belongs to
/// the first token at or after it, so a token owns the range since the
/// previous token (the first one also owns the wrap-around).
fn ownership(instances: &[std::sync::Arc<InstanceDesc>]) -> HashMap<String, f64> {
    let mut tokens: Vec<(u32, &str)> = instances
        .iter()
        .flat_map(|i| i.tokens.iter().map(move |&t| (t, i.id.as_str())))
        .collect();
    tokens.sort_unstable();
    let mut owned: HashMap<String, f64> = HashMap::new();
    let space = u64::from(u32::MAX) + 1;
    for (index, &(token, id)) in tokens.iter().enumerate() {
        let span = if index == 0 {
            let last = tokens.last().map_or(0, |t| t.0);
            u64::from(token) + (space - u64::from(last))
        } else {
            u64::from(token) - u64::from(tokens[index - 1].0)
        };
        *owned.entry(id.to_string()).or_default() += span as f64 / space as f64 * 100.0;
    }
    owned
}

fn rows(state: &PageState) -> Vec<InstanceRow> {
    let instances = state.ring.instances();
    let owned = ownership(&instances);
    let now = now_secs();
    instances
        .iter()
        .map(|i| InstanceRow {
            id: i.id.clone(),
            addr: i.addr.clone(),
            zone: i.zone.clone(),
            state: i.state.to_string(),
            healthy: i.heartbeat_fresh(now, state.heartbeat_timeout_secs),
            tokens: i.tokens.clone(),
            ownership_percent: owned.get(&i.id).copied().unwrap_or(0.0),
            registered_timestamp: i.registered_timestamp,
            heartbeat_timestamp: i.heartbeat_timestamp,
            heartbeat_age_seconds: now - i.heartbeat_timestamp,
        })
        .collect()
}

async fn show(State(state): State<PageState>, headers: HeaderMap) -> Response {
    let rows = rows(&state);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return axum::Json(serde_json::json!({ "instances": rows })).into_response();
    }
    let mut html = String::from(
        "<!DOCTYPE html><html><head><title>Strata ingester ring</title></head><body>\
         <h1>Ingester ring</h1><table border=\"1\" cellpadding=\"4\"><tr><th>Instance</th>\
         <th>Address</th><th>Zone</th><th>State</th><th>Health</th><th>Tokens</th>\
         <th>Ownership</th><th>Last heartbeat</th><th></th></tr>",
    );
    for row in &rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.1}%</td><td>{}s ago</td><td><form method=\"post\">\
             <input type=\"hidden\" name=\"forget\" value=\"{}\">\
             <button type=\"submit\">Forget</button></form></td></tr>",
            escape_html(&row.id),
            escape_html(&row.addr),
            escape_html(&row.zone),
            row.state,
            if row.healthy { "healthy" } else { "UNHEALTHY" },
            row.tokens.len(),
            row.ownership_percent,
            row.heartbeat_age_seconds,
            escape_html(&row.id),
        );
    }
    html.push_str("</table></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn forget(State(state): State<PageState>, Form(form): Form<ForgetForm>) -> Response {
    match state.ring.forget(&form.forget).await {
        Ok(true) => (
            StatusCode::OK,
            format!("forgot instance {:?}\n", form.forget),
        )
            .into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            format!("no instance {:?} in the ring\n", form.forget),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not update the ring: {e}\n"),
        )
            .into_response(),
    }
}

/// Escapes text for HTML element content and quoted attributes (also used by
/// other components' status pages).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `strata_ring_members{name="ingester",state}` and
/// `strata_ring_unhealthy_members{name="ingester"}`, refreshed every few
/// seconds from the local copy of the ring (never from etcd).
pub fn spawn_ring_metrics(ring: Ring, registry: &Registry) -> Result<(), prometheus::Error> {
    let members = IntGaugeVec::new(
        Opts::new("strata_ring_members", "Instances in the ring, by state."),
        &["name", "state"],
    )?;
    let unhealthy = IntGaugeVec::new(
        Opts::new(
            "strata_ring_unhealthy_members",
            "Instances in the ring whose heartbeat is older than the timeout.",
        ),
        &["name"],
    )?;
    registry.register(Box::new(members.clone()))?;
    registry.register(Box::new(unhealthy.clone()))?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let summary = ring.summary();
            for (state, count) in &summary.by_state {
                members
                    .with_label_values(&["ingester", state.as_str()])
                    .set(*count as i64);
            }
            unhealthy
                .with_label_values(&["ingester"])
                .set(summary.unhealthy as i64);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn instance(id: &str, tokens: Vec<u32>) -> Arc<InstanceDesc> {
        Arc::new(InstanceDesc {
            id: id.into(),
            addr: String::new(),
            zone: String::new(),
            state: crate::InstanceState::Active,
            tokens,
            registered_timestamp: 0,
            heartbeat_timestamp: 0,
        })
    }

    #[test]
    fn ownership_sums_to_100_and_handles_wrap_around() {
        let owned = ownership(&[
            instance("a", vec![0x4000_0000]),
            instance("b", vec![0x8000_0000, 0xC000_0000]),
        ]);
        // a owns (0xC000_0000, 2^32) plus [0, 0x4000_0000]: half the space.
        assert!((owned["a"] - 50.0).abs() < 1e-9, "{owned:?}");
        assert!((owned["b"] - 50.0).abs() < 1e-9, "{owned:?}");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
