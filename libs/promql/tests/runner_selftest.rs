//! A self-test of the promqltest runner (`strata_promql::test_script`): small
//! scripts whose expectations are deliberately wrong in one way each must be
//! reported as failed, the same scripts with right expectations as passed. A
//! runner that passes what it does not check would make the conformance
//! figures meaningless; this is what shows it does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_promql::test_script::{run_script, Outcome};
use strata_promql::EngineOptions;

/// Two series, three points each (at 0, 1m, 2m).
const DATA: &str = "load 1m\n  m{a=\"1\"} 1 2 3\n  m{a=\"2\"} 10 20 30\n\n";

/// The outcome of the single eval of `DATA` followed by `eval`.
async fn outcome(eval: &str) -> Outcome {
    let script = format!("{DATA}{eval}\n");
    let results = run_script(&script, &EngineOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the script does not parse: {e}\n{script}"));
    assert_eq!(results.len(), 1, "{script}");
    results[0].outcome.clone()
}

/// Asserts that `eval` fails, and that the reason mentions `why`.
async fn assert_fails(eval: &str, why: &str) {
    match outcome(eval).await {
        Outcome::Failed(r) => assert!(r.contains(why), "failed for another reason: {r}\n{eval}"),
        other => panic!("expected a failure ({why}), got {other:?}\n{eval}"),
    }
}

async fn assert_passes(eval: &str) {
    assert_eq!(outcome(eval).await, Outcome::Passed, "{eval}");
}

#[tokio::test]
async fn right_expectations_pass() {
    assert_passes("eval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30").await;
    assert_passes("eval_ordered instant at 2m sort_desc(m)\n  m{a=\"2\"} 30\n  m{a=\"1\"} 3").await;
    assert_passes("eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 3\n  m{a=\"2\"} 10 20 30")
        .await;
    assert_passes("eval instant at 2m sum(m)\n  {} 33").await;
    assert_passes("eval instant at 2m 1 + 2\n  3").await;
    assert_passes(
        "eval instant at 2m quantile(2, m)\n  expect warn msg: PromQL warning: quantile value should be between 0 and 1, got 2\n  {} +Inf",
    )
    .await;
    assert_passes(
        "eval instant at 2m quantile(2, m)\n  expect warn regex: quantile value\n  {} +Inf",
    )
    .await;
    assert_passes("eval instant at 2m m +\n  expect fail regex: .").await;
    assert_passes("eval instant at 2m m\n  expect no_warn\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30").await;
}

#[tokio::test]
async fn a_wrong_value_fails() {
    assert_fails(
        "eval instant at 2m m\n  m{a=\"1\"} 4\n  m{a=\"2\"} 30",
        "expected 4, got 3",
    )
    .await;
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 4\n  m{a=\"2\"} 10 20 30",
        "series m{a=\"1\"}: expected [1@0 2@60000 4@120000]",
    )
    .await;
    assert_fails("eval instant at 2m 1 + 2\n  4", "expected scalar 4, got 3").await;
}

#[tokio::test]
async fn wrong_labels_fail() {
    assert_fails(
        "eval instant at 2m m\n  m{a=\"3\"} 3\n  m{a=\"2\"} 30",
        "expected series m{a=\"3\"} 3",
    )
    .await;
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  m{a=\"3\"} 1 2 3\n  m{a=\"2\"} 10 20 30",
        "not in result",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_order_fails() {
    assert_fails(
        "eval_ordered instant at 2m sort_desc(m)\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30",
        "at this position",
    )
    .await;
    // A range query answers a matrix, whose order is by labels: asking for an
    // order there is a mistake promqltest reports.
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  expect ordered\n  m{a=\"1\"} 1 2 3\n  m{a=\"2\"} 10 20 30",
        "ordered",
    )
    .await;
}

#[tokio::test]
async fn a_missing_series_fails() {
    assert_fails(
        "eval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30\n  m{a=\"3\"} 7",
        "expected 3 series, got 2",
    )
    .await;
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 3\n  m{a=\"2\"} 10 20 30\n  m{a=\"3\"} 1 1 1",
        "expected 3 series, got 2",
    )
    .await;
}

#[tokio::test]
async fn an_extra_series_fails() {
    assert_fails(
        "eval instant at 2m m\n  m{a=\"1\"} 3",
        "expected 1 series, got 2",
    )
    .await;
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 3",
        "expected 1 series, got 2",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_error_message_fails() {
    // The parser's error: compared like any other (it used to pass unread).
    assert_fails(
        "eval instant at 2m m +\n  expect fail msg: not what the parser says",
        "expected error \"not what the parser says\"",
    )
    .await;
    assert_fails(
        "eval instant at 2m m +\n  expect fail regex: ^nope$",
        "does not match",
    )
    .await;
    assert_fails(
        "eval_fail instant at 2m m +\n  expected_fail_message not what the parser says",
        "expected error",
    )
    .await;
    // An error of the evaluation, with the wrong message.
    assert_fails(
        "eval instant at 2m count_values(\"a b\", m)\n  expect fail msg: something else",
        "expected error \"something else\"",
    )
    .await;
    // A query expected to fail that succeeds.
    assert_fails(
        "eval instant at 2m m\n  expect fail",
        "expected the query to fail",
    )
    .await;
    assert_fails(
        "eval range from 0 to 2m step 1m m\n  expect fail",
        "expected the query to fail",
    )
    .await;
    // The \xNN query used to be skipped: it is compared now.
    let q = "eval instant at 2m count_values(\"a\\xc5z\", m)\n  expect fail msg:invalid label name \"a\\xc5z\"";
    assert!(matches!(outcome(q).await, Outcome::Failed(_)));
}

#[tokio::test]
async fn an_unexpected_error_fails() {
    // A query the parser rejects is not "unsupported" unless the engine says so.
    assert_fails("eval instant at 2m m +\n  {} 1", "unexpected error").await;
}

#[tokio::test]
async fn a_missing_warning_fails() {
    assert_fails(
        "eval instant at 2m m\n  expect warn\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30",
        "expected warn annotations, got none",
    )
    .await;
    assert_fails(
        "eval_warn instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30",
        "expected warn annotations, got none",
    )
    .await;
    assert_fails(
        "eval instant at 2m m\n  expect info\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30",
        "expected info annotations, got none",
    )
    .await;
    // The one this runner used to skip as "unsupported".
    assert_fails(
        "eval instant at 2m m\n  expect warn msg: PromQL warning: conflicting counter resets during histogram aggregation\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30",
        "expected warn annotations, got none",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_or_unexpected_warning_fails() {
    // A warning that matches no expectation.
    assert_fails(
        "eval instant at 2m quantile(2, m)\n  expect warn msg: some other warning\n  {} +Inf",
        "expected a warn annotation matching message \"some other warning\"",
    )
    .await;
    // Every expected regex must match, not just one of them.
    assert_fails(
        "eval instant at 2m quantile(2, m)\n  expect warn regex: quantile value\n  expect warn regex: ^no such warning$\n  {} +Inf",
        "matching pattern \"^no such warning$\"",
    )
    .await;
    // A warning nobody expected, with `expect no_warn`.
    assert_fails(
        "eval instant at 2m quantile(2, m)\n  expect no_warn\n  {} +Inf",
        "unexpected warn annotations",
    )
    .await;
    // An info expected where there is a warning.
    assert_fails(
        "eval instant at 2m quantile(2, m)\n  expect info\n  {} +Inf",
        "expected info annotations, got none",
    )
    .await;
}

#[tokio::test]
async fn a_function_the_engine_lacks_is_unsupported() {
    // The only way an eval becomes unsupported: the engine's typed reason.
    match outcome("eval instant at 2m info(m)\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30").await {
        Outcome::Unsupported(r) => assert!(r.contains("info()"), "{r}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_expectations_are_errors_of_the_script() {
    let opts = EngineOptions::default();
    for eval in [
        // An instant eval answers one point per series.
        "eval instant at 2m m\n  m{a=\"1\"} 3 4\n  m{a=\"2\"} 30",
        // Regexes that do not compile would match nothing, or anything.
        "eval instant at 2m quantile(2, m)\n  expect warn regex: (unclosed\n  {} +Inf",
        "eval instant at 2m quantile(2, m)\n  expect info regex: [z-a]\n  {} +Inf",
        "eval instant at 2m m +\n  expect fail regex: (unclosed",
        "eval_fail instant at 2m m +\n  expected_fail_regexp (unclosed",
        // Contradictions promqltest refuses.
        "eval instant at 2m m +\n  expect fail\n  expect fail msg: x",
        "eval instant at 2m quantile(2, m)\n  expect warn\n  expect no_warn\n  {} +Inf",
    ] {
        let script = format!("{DATA}{eval}\n");
        assert!(
            run_script(&script, &opts).await.is_err(),
            "accepted: {eval}"
        );
    }
}
