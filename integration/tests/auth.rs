//! `auth.enabled`: credentials from a tenants file decide who may push and
//! query, and for which tenant.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_with_headers, now_ms, push_with_headers, write_request,
    Strata,
};

// Hashes made with the one-liner of docs/authentication.md:
// printf '%s%s' "$SALT" "$PW" | sha256sum
const TENANTS: &str = r#"
credentials:
  - name: team-a-writer
    tenant: team-a
    scopes: [read, write]
    basic_auth:
      username: team-a
      # pw-a-write
      password_hash: "sha256$salt-int-aaaa$0aedba07fd1bd59e75aef415691f59f8152efa6b2baab5a8e188a9f3da688d2a"
  - name: team-a-reader
    tenant: team-a
    scopes: [read]
    # token-a-read
    bearer_token_hash: "sha256$salt-int-bbbb$54bcbb6e2943422db9f94188d4f53658d7e082a4c7f53f05fcf5285e81aeccb6"
  - name: team-b-writer
    tenant: team-b
    scopes: [read, write]
    # token-b
    bearer_token_hash: "sha256$salt-int-cccc$4f62215c8858f405809cd7033b798af9a9df8e3a994594889d86f7724f4a4b98"
"#;

/// `Basic base64("team-a:pw-a-write")`.
const A_WRITER: &str = "Basic dGVhbS1hOnB3LWEtd3JpdGU=";
/// `Basic base64("team-a:wrong")`.
const A_WRONG_PASSWORD: &str = "Basic dGVhbS1hOndyb25n";
const A_READER: &str = "Bearer token-a-read";
const B_WRITER: &str = "Bearer token-b";

fn body(owner: &str, now: i64) -> Vec<u8> {
    encode_write_request(&write_request(&[(
        &[("__name__", "auth_metric"), ("owner", owner)],
        &[(now - 1000, 1.0)],
    )]))
}

/// The `owner` labels of `auth_metric` that `authorization` can read.
async fn owners(strata: &Strata, authorization: &str, now: i64) -> (u16, Vec<String>, String) {
    let t = now as f64 / 1000.0;
    let (status, text) = get_with_headers(
        &strata.url(&format!("/api/v1/query?query=auth_metric&time={t}")),
        &[("Authorization", authorization)],
    )
    .await;
    if status != 200 {
        return (status, Vec::new(), text);
    }
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut owners: Vec<String> = json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["metric"]["owner"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    owners.sort();
    (status, owners, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_scopes_and_tenants_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let tenants_file = dir.path().join("tenants.yaml");
    std::fs::write(&tenants_file, TENANTS).unwrap();
    let strata = Strata::start(&[
        "-target=all",
        "-auth.enabled=true",
        &format!("-auth.tenants_file={}", tenants_file.display()),
    ])
    .await;
    let push = strata.url("/api/v1/push");
    let now = now_ms();

    // Correct write credentials: 200, each for its own tenant.
    let (status, msg) =
        push_with_headers(&push, &[("Authorization", A_WRITER)], body("a", now)).await;
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = push_with_headers(
        &push,
        &[("Authorization", B_WRITER), ("X-Scope-OrgID", "team-b")],
        body("b", now),
    )
    .await;
    assert_eq!(status, 200, "{msg}");

    // Wrong password, unknown token, or only the header: 401, no secret echoed.
    for headers in [
        vec![("Authorization", A_WRONG_PASSWORD)],
        vec![("Authorization", "Bearer not-a-token")],
        vec![("X-Scope-OrgID", "team-a")],
    ] {
        let (status, msg) = push_with_headers(&push, &headers, body("x", now)).await;
        assert_eq!(status, 401, "{headers:?}: {msg}");
        assert!(
            !msg.contains("wrong") && !msg.contains("not-a-token"),
            "{msg}"
        );
    }

    // A read-only token pushing: 403 naming the scope.
    let (status, msg) =
        push_with_headers(&push, &[("Authorization", A_READER)], body("x", now)).await;
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("write scope"), "{msg}");

    // Tenant A's credential cannot act for tenant B, for writes or reads.
    let (status, msg) = push_with_headers(
        &push,
        &[("Authorization", A_WRITER), ("X-Scope-OrgID", "team-b")],
        body("x", now),
    )
    .await;
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("cannot act for tenant \"team-b\""), "{msg}");
    let t = now as f64 / 1000.0;
    let (status, msg) = get_with_headers(
        &strata.url(&format!("/api/v1/query?query=auth_metric&time={t}")),
        &[("Authorization", A_READER), ("X-Scope-OrgID", "team-b")],
    )
    .await;
    assert_eq!(status, 403, "{msg}");
    assert!(
        msg.contains("credential for tenant \\\"team-a\\\" cannot act for tenant \\\"team-b\\\"")
            || msg.contains("credential for tenant \"team-a\" cannot act for tenant \"team-b\""),
        "{msg}"
    );

    // Each credential reads its own tenant's data only.
    let a_sees = eventually(
        "team-a's sample is queryable",
        Duration::from_secs(10),
        || async {
            let (status, owners, text) = owners(&strata, A_READER, now).await;
            assert_eq!(status, 200, "{text}");
            (!owners.is_empty()).then_some(owners)
        },
    )
    .await;
    assert_eq!(a_sees, vec!["a".to_string()]);
    let (status, b_sees, text) = owners(&strata, B_WRITER, now).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(b_sees, vec!["b".to_string()]);
    let (status, _, text) = owners(&strata, A_WRONG_PASSWORD, now).await;
    assert_eq!(status, 401, "{text}");
    let (status, a_sees, text) = owners(&strata, A_WRITER, now).await;
    assert_eq!((status, a_sees), (200, vec!["a".to_string()]), "{text}");

    // The tenants file is re-read: revoking the reader token takes effect
    // without a restart.
    let revoked = TENANTS
        .replace("name: team-a-reader", "name: team-a-reader-revoked")
        .replace(
            "scopes: [read]\n    # token-a-read",
            "scopes: [write]\n    # token-a-read",
        );
    assert_ne!(revoked, TENANTS);
    let tmp = dir.path().join("tenants.yaml.tmp");
    std::fs::write(&tmp, revoked).unwrap();
    std::fs::rename(&tmp, &tenants_file).unwrap();
    eventually(
        "the changed tenants file is in force",
        Duration::from_secs(10),
        || async {
            let (status, _, _) = owners(&strata, A_READER, now).await;
            (status == 403).then_some(())
        },
    )
    .await;
}
