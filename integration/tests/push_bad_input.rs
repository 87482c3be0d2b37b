//! Hostile and malformed pushes against the real binary: each gets the right
//! status and a message naming the problem, and the process keeps serving.

use strata_integration::{encode_write_request, now_ms, push_raw, write_request, Strata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_clear_errors_and_nothing_panics() {
    let mut strata = Strata::start(&["-target=all"]).await;
    let url = strata.url("/api/v1/push");
    let now = now_ms();
    let good = encode_write_request(&write_request(&[(
        &[("__name__", "m"), ("job", "a")],
        &[(now, 1.0)],
    )]));

    let (status, msg) = push_raw(&url, None, good.clone()).await;
    assert_eq!(status, 401, "no tenant: {msg}");

    for tenant in ["../x", &"a".repeat(200)] {
        let (status, msg) = push_raw(&url, Some(tenant), good.clone()).await;
        assert!(
            status == 400 || status == 401,
            "tenant {tenant:?}: {status} {msg}"
        );
    }

    let (status, msg) = push_raw(&url, Some("t"), b"definitely not snappy".to_vec()).await;
    assert_eq!(status, 400, "not snappy: {msg}");
    assert!(msg.to_lowercase().contains("snappy"), "{msg}");

    let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    let (status, msg) = push_raw(&url, Some("t"), not_protobuf).await;
    assert_eq!(status, 400, "not protobuf: {msg}");

    // A snappy block header declaring ~4 GiB of uncompressed data, and nothing else.
    let huge = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let (status, msg) = push_raw(&url, Some("t"), huge).await;
    assert_eq!(status, 400, "huge declared length: {msg}");

    let bad_label = encode_write_request(&write_request(&[(
        &[("__name__", "m"), ("bad-label", "x")],
        &[(now, 1.0)],
    )]));
    let (status, msg) = push_raw(&url, Some("t"), bad_label).await;
    assert_eq!(status, 400, "invalid label name: {msg}");
    assert!(
        msg.contains("bad-label"),
        "the message must name the label: {msg}"
    );

    let (status, msg) = push_raw(&url, Some("t"), good.clone()).await;
    assert_eq!(status, 200, "{msg}");
    let older = encode_write_request(&write_request(&[(
        &[("__name__", "m"), ("job", "a")],
        &[(now - 60_000, 2.0)],
    )]));
    let (status, msg) = push_raw(&url, Some("t"), older).await;
    assert_eq!(status, 400, "out-of-order sample: {msg}");
    assert!(
        msg.contains("out of order") || msg.contains("out-of-order"),
        "{msg}"
    );

    assert!(
        strata.process.is_running(),
        "strata died:\n{}",
        strata.process.logs()
    );
    let (status, _) = push_raw(&url, Some("t"), good).await;
    assert_eq!(status, 200, "still serving");
    let logs = strata.process.logs();
    assert!(!logs.contains("panicked"), "a panic was logged:\n{logs}");
}
