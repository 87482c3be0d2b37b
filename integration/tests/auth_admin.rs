//! `auth.enabled` on the administrative routes and with bcrypt passwords:
//! every admin route refuses a caller without a credential (401) and one
//! without the `admin` scope (403), and runs for an admin; without auth they
//! answer anyone, as before. A password hashed by Debian's `htpasswd -B`
//! authenticates; wrong passwords from one address are counted and, past
//! the limit, refused with 429 while another address is not.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use strata_integration::{
    encode_write_request, now_ms, push_with_headers, require_program, write_request, Strata,
};

/// A `user:hash` line from `htpasswd -nbB -C 5` (apache2-utils), split.
fn htpasswd(user: &str, password: &str) -> String {
    let program = require_program("htpasswd");
    let out = std::process::Command::new(program)
        .args(["-nbB", "-C", "5", user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let hash = line.trim().strip_prefix(&format!("{user}:")).unwrap();
    assert!(hash.starts_with("$2y$05$"), "{hash}");
    hash.to_string()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn tenants(ops_hash: &str, team_a_hash: &str) -> String {
    // token-b: printf '%s%s' salt-int-cccc token-b | sha256sum
    format!(
        r#"
credentials:
  - name: ops
    tenant: team-a
    scopes: [admin]
    basic_auth: {{username: ops, password_hash: '{ops_hash}'}}
  - name: team-a-prometheus
    tenant: team-a
    scopes: [read, write]
    basic_auth: {{username: team-a, password_hash: '{team_a_hash}'}}
  - name: team-b-writer
    tenant: team-b
    scopes: [read, write]
    bearer_token_hash: "sha256$salt-int-cccc$4f62215c8858f405809cd7033b798af9a9df8e3a994594889d86f7724f4a4b98"
"#
    )
}

/// Sends `method path` from `source` with `authorization` (and a form body
/// for POSTs that take one); returns the status, `Retry-After` and the text.
async fn call(
    source: IpAddr,
    strata: &Strata,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap();
    let (path, form) = path
        .split_once('?')
        .map_or((path, None), |(p, f)| (p, Some(f)));
    let url = strata.url(path);
    let mut req = match method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    if let Some(form) = form {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.text().await.unwrap())
}

const LOCAL: &str = "127.0.0.1";

/// The admin routes `-target=all` serves (with the HA tracker on), and the
/// status an admin gets. The ring's forget comes last (it removes the
/// process's own ingester); here it names an instance that is not there.
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/ingester/flush"),
    ("POST", "/compactor/run"),
    ("GET", "/config"),
    ("GET", "/runtime_config"),
    ("GET", "/distributor/ha_tracker"),
];

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_admin_scope_and_bcrypt_passwords_back_off() {
    let ops_hash = htpasswd("ops", "ops-secret-1");
    let team_a_hash = htpasswd("team-a", "team-a-pw");
    let dir = tempfile::tempdir().unwrap();
    let tenants_file = dir.path().join("tenants.yaml");
    std::fs::write(&tenants_file, tenants(&ops_hash, &team_a_hash)).unwrap();
    let strata = Strata::start(&[
        "-target=all",
        "-auth.enabled=true",
        &format!("-auth.tenants_file={}", tenants_file.display()),
        "-auth.max_failures_per_source=5",
        "-distributor.ha_tracker.enable_ha_tracker=true",
    ])
    .await;
    let local: IpAddr = LOCAL.parse().unwrap();
    let ops = basic("ops", "ops-secret-1");
    let ops_wrong = basic("ops", "ops-secret-2");
    let team_a = basic("team-a", "team-a-pw");

    // Open pages need nothing.
    for path in ["/ready", "/metrics", "/ingester/ring", "/"] {
        let (status, _, text) = call(local, &strata, "GET", path, &[]).await;
        assert_eq!(status, 200, "GET {path}: {text}");
    }

    let ring_forget = "/ingester/ring?forget=no-such-instance";
    let routes = ADMIN_ROUTES
        .iter()
        .copied()
        .chain(std::iter::once(("POST", ring_forget)));
    for (i, (method, path)) in routes.enumerate() {
        let what = format!("{method} {path}");
        // Wrong passwords from an address of their own each, so that this
        // address stays below the back-off limit.
        let guesser: IpAddr = format!("127.0.1.{}", i + 1).parse().unwrap();
        let (status, _, text) = call(local, &strata, method, path, &[]).await;
        assert_eq!(status, 401, "{what} without a credential: {text}");
        let (status, _, text) = call(
            guesser,
            &strata,
            method,
            path,
            &[("Authorization", &ops_wrong)],
        )
        .await;
        assert_eq!(status, 401, "{what} with a wrong password: {text}");
        assert!(!text.contains("ops-secret"), "{text}");
        for non_admin in [team_a.as_str(), "Bearer token-b"] {
            let (status, _, text) = call(
                local,
                &strata,
                method,
                path,
                &[("Authorization", non_admin)],
            )
            .await;
            assert_eq!(status, 403, "{what} with {non_admin}: {text}");
            assert!(text.contains("lacks the admin scope"), "{text}");
            assert!(
                text.contains("credential \"team-a-prometheus\"")
                    || text.contains("credential \"team-b-writer\""),
                "{text}"
            );
        }
        // An admin, whatever tenant the header names.
        for tenant in ["team-a", "team-b"] {
            let (status, _, text) = call(
                local,
                &strata,
                method,
                path,
                &[("Authorization", &ops), ("X-Scope-OrgID", tenant)],
            )
            .await;
            if path == ring_forget {
                // The route ran: it found no such instance.
                assert_eq!(status, 404, "{what}: {text}");
                assert!(text.contains("no instance"), "{text}");
            } else {
                assert!(
                    (200..300).contains(&status),
                    "{what} as admin: {status} {text}"
                );
            }
        }
    }
    // The htpasswd-made password pushes; a wrong one is 401.
    let now = now_ms();
    let body = || {
        encode_write_request(&write_request(&[(
            &[("__name__", "bcrypt_metric")],
            &[(now - 1000, 1.0)],
        )]))
    };
    let push = strata.url("/api/v1/push");
    for _ in 0..3 {
        let (status, text) = push_with_headers(&push, &[("Authorization", &team_a)], body()).await;
        assert_eq!(status, 200, "{text}");
    }
    let wrong_a = basic("team-a", "team-a-PW");
    let (status, text) = push_with_headers(&push, &[("Authorization", &wrong_a)], body()).await;
    assert_eq!(status, 401, "{text}");

    // From another address: wrong passwords until the back-off (5 failures).
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    for i in 0..5 {
        let (status, _, text) = call(
            attacker,
            &strata,
            "GET",
            "/config",
            &[("Authorization", &ops_wrong)],
        )
        .await;
        assert_eq!(status, 401, "failure {i}: {text}");
    }
    // Then refused, even with the right password, with when to retry.
    let (status, retry, text) = call(
        attacker,
        &strata,
        "GET",
        "/config",
        &[("Authorization", &ops)],
    )
    .await;
    assert_eq!(status, 429, "{text}");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (status, _, text) = call(
        attacker,
        &strata,
        "GET",
        "/api/v1/query?query=up",
        &[("Authorization", "Bearer token-b")],
    )
    .await;
    assert_eq!(status, 429, "{text}");
    // Open pages are not throttled, and this address is not either.
    let (status, _, _) = call(attacker, &strata, "GET", "/ready", &[]).await;
    assert_eq!(status, 200);
    let (status, _, text) =
        call(local, &strata, "GET", "/config", &[("Authorization", &ops)]).await;
    assert_eq!(status, 200, "{text}");

    // Counted per credential, by reason; the throttled requests too.
    let metrics = strata.metrics_text().await;
    // 6 routes x 1 wrong password, 5 from the attacker.
    assert_eq!(
        metric_value(
            &metrics,
            "strata_auth_failed_attempts_total{credential=\"ops\",reason=\"wrong_password\"}"
        ),
        11.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "strata_auth_failed_attempts_total{credential=\"team-a-prometheus\",reason=\"wrong_password\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "strata_auth_throttled_requests_total"),
        2.0
    );
    // bcrypt ran for the first success of each password and for each
    // failure; the other successes came from the cache.
    let computed = metric_value(
        &metrics,
        "strata_auth_bcrypt_checks_total{outcome=\"computed\"}",
    );
    let cached = metric_value(
        &metrics,
        "strata_auth_bcrypt_checks_total{outcome=\"cached\"}",
    );
    // Computed: the first success of each of the two passwords, and the 12
    // failures; every other success (admin calls, 403s, pushes and the
    // pushes' own tenant resolution) came from the cache.
    assert_eq!(computed, 2.0 + 12.0, "{metrics}");
    assert!(cached >= 20.0, "{metrics}");
    assert!(
        !metrics.contains("127.0.0.2"),
        "a source address became a label"
    );

    // The log names the credential and the source, never a secret or hash.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = strata.process.logs();
    assert!(logs.contains("authentication failed"), "{logs}");
    assert!(logs.contains("127.0.0.2"), "{logs}");
    for secret in ["ops-secret", "team-a-PW", &ops_hash[7..], &team_a_hash[7..]] {
        assert!(!logs.contains(secret), "the log shows {secret}");
    }

    // Last, as it empties the ring: forgetting a real instance is 200.
    let ring = strata.ring_json().await;
    let id = ring["instances"][0]["id"].as_str().unwrap().to_string();
    let (status, _, text) = call(
        local,
        &strata,
        "POST",
        &format!("/ingester/ring?forget={id}"),
        &[("Authorization", &ops)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_admin_routes_answer_anyone() {
    let strata = Strata::start(&[
        "-target=all",
        "-distributor.ha_tracker.enable_ha_tracker=true",
    ])
    .await;
    let local: IpAddr = LOCAL.parse().unwrap();
    for (method, path) in ADMIN_ROUTES {
        let (status, _, text) = call(local, &strata, method, path, &[]).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
    }
    let (status, _, text) = call(
        local,
        &strata,
        "POST",
        "/ingester/ring?forget=no-such-instance",
        &[],
    )
    .await;
    assert_eq!(status, 404, "{text}");
    let metrics = strata.metrics_text().await;
    assert!(
        !metrics.contains("strata_auth_"),
        "auth metrics without auth"
    );
}
