//! Which HTTP route needs which credential when `auth.enabled` is on: the
//! one table of the process ([`ROUTES`]), and the middleware that checks it
//! before any route runs. A route not in the table is an admin route, so a
//! route added later (the ruler's, the query-frontend's, tenant deletion) is
//! safe until declared otherwise; declaring it is one line here, and
//! `docs/authentication.md`'s table is generated from this one (a test
//! keeps them equal).
//!
//! The data routes still resolve their tenant themselves (the resolvers of
//! `strata-auth`); this check comes first so that bcrypt runs on a blocking
//! thread, failures are counted per source and back off, and the admin
//! decision is made in one place.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method};
use strata_auth::{Access, Authenticator, Refused, Scope};
use strata_status::ErrorCode;

/// How a path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Exact,
    /// The path starts with this (which ends in `/`).
    Prefix,
}

/// How refusals are written: the Prometheus API's JSON, or a line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    PrometheusApi,
    Text,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Route {
    path: &'static str,
    matching: Match,
    /// For GET and HEAD.
    read: Access,
    /// For every other method.
    write: Access,
    shape: Shape,
    /// Why, for the docs (the table there is generated from this one by a
    /// test, the only reader).
    #[cfg_attr(not(test), allow(dead_code))]
    reason: &'static str,
}

const fn route(path: &'static str, access: Access, reason: &'static str) -> Route {
    Route {
        path,
        matching: Match::Exact,
        read: access,
        write: access,
        shape: Shape::Text,
        reason,
    }
}

const OPEN: Access = Access::Open;
const ADMIN: Access = Access::Admin;
const READ: Access = Access::Tenant(Scope::Read);
const WRITE: Access = Access::Tenant(Scope::Write);

/// Every route the process serves (and a few to come), in matching order:
/// the first row that matches decides.
const ROUTES: &[Route] = &[
    route("/", OPEN, "the index: links to the pages below, nothing else"),
    route(
        "/ready",
        OPEN,
        "readiness for load balancers and the kubelet, which send no credential; names a service that is not ready, nothing of tenants",
    ),
    route(
        "/metrics",
        OPEN,
        "scraped without a credential, as in Mimir; per-tenant counters carry tenant IDs as label values, but no samples and no secrets (restrict the port by network policy if tenant IDs are confidential)",
    ),
    Route {
        path: "/ingester/ring",
        matching: Match::Exact,
        read: OPEN,
        write: ADMIN,
        shape: Shape::Text,
        reason: "GET shows instances, addresses, tokens and heartbeats, no tenant data (open, as in Mimir); POST `forget` removes an instance from the ring",
    },
    Route {
        path: "/store-gateway/ring",
        matching: Match::Exact,
        read: OPEN,
        write: ADMIN,
        shape: Shape::Text,
        reason: "as the ingester ring's page, for the store-gateway ring",
    },
    route(
        "/ingester/flush",
        ADMIN,
        "cuts every tenant's head into blocks and uploads them",
    ),
    route(
        "/ingester/shutdown",
        ADMIN,
        "not served yet (flush on shutdown is `ingester.flush_on_shutdown`); admin when it comes",
    ),
    route(
        "/compactor/run",
        ADMIN,
        "runs a compaction pass over every tenant's blocks",
    ),
    route(
        "/config",
        ADMIN,
        "the running config: bucket, KV store and endpoints, every default limit (secrets masked, the rest the operator's)",
    ),
    route(
        "/runtime_config",
        ADMIN,
        "every tenant's overrides: tenant IDs and their limits",
    ),
    route(
        "/distributor/ha_tracker",
        ADMIN,
        "each tenant's HA clusters and elected replicas",
    ),
    route(
        "/api/v1/push",
        WRITE,
        "remote write, for the credential's tenant",
    ),
    route(
        "/api/prom/push",
        WRITE,
        "remote write (Cortex's path), for the credential's tenant",
    ),
    Route {
        path: "/api/v1/",
        matching: Match::Prefix,
        read: READ,
        write: READ,
        shape: Shape::PrometheusApi,
        reason: "the Prometheus query API and remote read, over the credential's tenant (`status/buildinfo` included; `status/config` and `status/flags` show the masked config, as Prometheus's do)",
    },
    Route {
        path: "/prometheus/api/v1/",
        matching: Match::Prefix,
        read: READ,
        write: READ,
        shape: Shape::PrometheusApi,
        reason: "the same API under Mimir's prefix",
    },
];

/// Any path no row matches.
const OTHER: Route = Route {
    path: "any other path",
    matching: Match::Prefix,
    read: ADMIN,
    write: ADMIN,
    shape: Shape::Text,
    reason: "routes added later are admin until declared here; an unknown path is 401/403 before its 404",
};

fn classify(path: &str) -> &'static Route {
    ROUTES
        .iter()
        .find(|r| match r.matching {
            Match::Exact => path == r.path,
            Match::Prefix => path.starts_with(r.path),
        })
        .unwrap_or(&OTHER)
}

fn access_of(route: &Route, method: &Method) -> Access {
    if method == Method::GET || method == Method::HEAD {
        route.read
    } else {
        route.write
    }
}

/// The middleware: admits the request to its route or answers the refusal.
/// Only installed when auth is enabled.
pub(crate) async fn admit(
    State(authenticator): State<Authenticator>,
    request: Request,
    next: Next,
) -> Response {
    let route = classify(request.uri().path());
    let access = access_of(route, request.method());
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match authenticator.admit(request.headers(), source, access).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refusal(refused, route.shape),
    }
}

fn refusal(refused: Refused, shape: Shape) -> Response {
    let code = refused.error.code;
    let mut response = match shape {
        Shape::PrometheusApi => {
            strata_querier::ApiError::from_service(refused.error).into_response()
        }
        Shape::Text => (code.http_status(), format!("{}\n", refused.error.message)).into_response(),
    };
    if code == ErrorCode::Unauthenticated {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"strata\""),
        );
    }
    if let Some(wait) = refused.retry_after {
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

#[cfg(test)]
fn needs(access: Access) -> &'static str {
    match access {
        Access::Open => "nothing",
        Access::Admin => "**admin**",
        Access::Tenant(Scope::Read) => "read",
        Access::Tenant(Scope::Write) => "write",
        Access::Tenant(Scope::Admin) => "**admin**",
    }
}

/// The table of `docs/authentication.md`.
#[cfg(test)]
fn markdown_table() -> String {
    let mut out = String::from("| route | methods | needs | why |\n|---|---|---|---|\n");
    for r in ROUTES.iter().chain(std::iter::once(&OTHER)) {
        let path = match r.matching {
            Match::Exact => format!("`{}`", r.path),
            Match::Prefix if r.path.starts_with('/') => format!("`{}…`", r.path),
            Match::Prefix => r.path.to_string(),
        };
        if r.read == r.write {
            out.push_str(&format!(
                "| {path} | all | {} | {} |\n",
                needs(r.read),
                r.reason
            ));
        } else {
            out.push_str(&format!(
                "| {path} | GET, HEAD | {} | {} |\n| {path} | others | {} | |\n",
                needs(r.read),
                r.reason,
                needs(r.write)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "<!-- route-access-table -->\n";
    const END: &str = "<!-- /route-access-table -->";

    #[test]
    fn the_docs_table_is_this_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/authentication.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (Some(start), Some(end)) = (doc.find(START), doc.find(END)) else {
            panic!("docs/authentication.md has no {START:?} ... {END:?} section");
        };
        let have = &doc[start + START.len()..end];
        let want = markdown_table();
        if std::env::var_os("STRATA_UPDATE_DOCS").is_some() && have != want {
            let updated = format!("{}{want}{}", &doc[..start + START.len()], &doc[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert!(
            have == want,
            "docs/authentication.md's route table is stale: run STRATA_UPDATE_DOCS=1 cargo test -p strata the_docs_table"
        );
    }

    #[test]
    fn classification() {
        let cases = [
            ("GET", "/ready", OPEN),
            ("GET", "/metrics", OPEN),
            ("GET", "/", OPEN),
            ("GET", "/ingester/ring", OPEN),
            ("HEAD", "/ingester/ring", OPEN),
            ("POST", "/ingester/ring", ADMIN),
            ("GET", "/store-gateway/ring", OPEN),
            ("POST", "/store-gateway/ring", ADMIN),
            ("POST", "/ingester/flush", ADMIN),
            ("GET", "/ingester/flush", ADMIN),
            ("POST", "/compactor/run", ADMIN),
            ("GET", "/config", ADMIN),
            ("GET", "/runtime_config", ADMIN),
            ("GET", "/distributor/ha_tracker", ADMIN),
            ("POST", "/api/v1/push", WRITE),
            ("POST", "/api/prom/push", WRITE),
            ("GET", "/api/v1/query", READ),
            ("POST", "/api/v1/query", READ),
            ("POST", "/prometheus/api/v1/read", READ),
            ("GET", "/prometheus/api/v1/status/buildinfo", READ),
            // Not exact matches: admin, never open.
            ("GET", "/ready/", ADMIN),
            ("GET", "/metrics/x", ADMIN),
            ("GET", "//config", ADMIN),
            ("GET", "/%63onfig", ADMIN),
            ("GET", "/api/v1", ADMIN),
            ("GET", "/prometheus/config/v1/rules", ADMIN),
            ("DELETE", "/purger/delete_tenant", ADMIN),
        ];
        for (method, path, want) in cases {
            let method: Method = method.parse().unwrap();
            assert_eq!(access_of(classify(path), &method), want, "{method} {path}");
        }
    }

    #[test]
    fn refusals_say_how_to_authenticate_and_when_to_retry() {
        let r = refusal(
            strata_status::ServiceError::new(ErrorCode::Unauthenticated, "who are you").into(),
            Shape::Text,
        );
        assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"strata\""
        );
        let r = refusal(
            Refused {
                error: strata_status::ServiceError::new(ErrorCode::TooManyRequests, "slow down"),
                retry_after: Some(std::time::Duration::from_secs(42)),
            },
            Shape::PrometheusApi,
        );
        assert_eq!(r.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
