//! Hostile queries against the real binary (`-target=all`, every component in
//! one process, as `make run` starts it). Before the shape limits, each of the
//! deep cases below aborted the whole process with a stack overflow. Each must
//! be answered with the right status and a message naming the limit, cost a
//! bounded amount of CPU (measured from /proc and printed, not asserted), and
//! leave the process running and ready. Then a few thousand random deep and
//! wide queries through the HTTP API must not take it down either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strata_integration::{encode_write_request, now_ms, push_raw, write_request, Strata};

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second here).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// POSTs a form (queries of a megabyte do not fit a URL) and returns the status
/// and the JSON body.
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    try_post_form(client, url, form)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// [`post_form`], with the error of a request that got no answer.
async fn try_post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(u16, serde_json::Value), String> {
    let resp = client
        .post(url)
        .header("X-Scope-OrgID", "t")
        .form(form)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
    let json = serde_json::from_str(&text)
        .map_err(|e| format!("not JSON ({e}): {}", &text[..text.len().min(300)]))?;
    Ok((status, json))
}

/// The length of `q` form-encoded (as `reqwest` sends it): bytes other than
/// ASCII letters, digits, `*-._` and the space become `%XX`.
fn form_encoded_len(q: &str) -> usize {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"*-._ ".contains(&b) {
                1
            } else {
                3
            }
        })
        .sum()
}

/// The query API's body limit (axum's default).
const BODY_LIMIT: usize = 2 << 20;

fn nested(open: &str, core: &str, close: &str, n: usize) -> String {
    format!("{}{core}{}", open.repeat(n), close.repeat(n))
}

/// The cases of the issue: (name, query, the status expected, what the error
/// must name).
fn cases() -> Vec<(String, String, u16, &'static str)> {
    let depth = "querier.max_query_expression_depth";
    let size = "querier.max_query_expression_size_bytes";
    let mut out = Vec::new();
    let kinds: [(&str, &str, &str, &str); 5] = [
        ("parentheses", "(", "up", ")"),
        ("unary", "-(", "up", ")"),
        ("function", "abs(", "up", ")"),
        ("aggregation", "sum(", "up", ")"),
        ("subquery", "max_over_time(", "up", "[30s:1m])"),
    ];
    for (name, open, core, close) in kinds {
        for n in [100, 1_000, 10_000, 100_000] {
            let q = nested(open, core, close, n);
            let (status, names) = if n == 100 {
                (200, "")
            } else if q.len() > 64 * 1024 {
                (400, size)
            } else {
                (400, depth)
            };
            out.push((format!("{name} x{n}"), q, status, names));
        }
    }
    for n in [1_000, 10_000] {
        out.push((
            format!("minus signs x{n}"),
            format!("{}1", "-".repeat(n)),
            400,
            depth,
        ));
    }
    for n in [1_000, 100_000] {
        let q = format!("up{}", "+up".repeat(n));
        let names = if q.len() > 64 * 1024 { size } else { depth };
        out.push((format!("chain up+up x{n}"), q, 400, names));
        let q = format!("1{}", "+1".repeat(n));
        let names = if q.len() > 64 * 1024 { size } else { depth };
        out.push((format!("chain 1+1 x{n}"), q, 400, names));
    }
    out.push((
        "1 MB a+a+…".into(),
        format!("a{}", "+a".repeat(500_000)),
        400,
        size,
    ));
    let matchers: Vec<String> = (0..50_000).map(|i| format!("l{i}=~\"v.*\"")).collect();
    out.push((
        "50,000 regex matchers".into(),
        format!("up{{{}}}", matchers.join(",")),
        400,
        size,
    ));
    let plain: Vec<String> = (0..50_000).map(|i| format!("l{i}=\"v\"")).collect();
    out.push((
        "50,000 matchers".into(),
        format!("up{{{}}}", plain.join(",")),
        400,
        size,
    ));
    out.push((
        "200 matchers".into(),
        format!("up{{{}}}", matchers[..200].join(",")),
        400,
        "querier.max_query_matchers_per_selector",
    ));
    // Beyond the HTTP body limit, the query API answers 413 before any of
    // this, in its JSON error shape.
    out.into_iter()
        .map(|(name, q, status, names)| {
            if form_encoded_len(&q) > BODY_LIMIT {
                (name, q, 413, "2 MiB")
            } else {
                (name, q, status, names)
            }
        })
        .collect()
}

/// Starts `strata` with `args` and pushes `up{job="a"}` of tenant `t` at a
/// minute ago and now; returns it, that now (ms) and a client whose requests
/// time out after 2 minutes. The client opens a connection per request: after
/// a 413 the server closes its side without reading the body, and a pooled
/// connection taken for the next request before the client noticed would fail
/// that request (`IncompleteMessage`; seen once in a run of this test).
async fn start_with_up(args: &[&str]) -> (Strata, i64, reqwest::Client) {
    let strata = Strata::start(args).await;
    let now = now_ms();
    let body = encode_write_request(&write_request(&[(
        &[("__name__", "up"), ("job", "a")],
        &[(now - 60_000, 1.0), (now, 1.0)],
    )]));
    let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some("t"), body).await;
    assert_eq!(status, 200, "{msg}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    (strata, now, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_and_the_process_stays_up() {
    let (mut strata, now, client) = start_with_up(&["-target=all"]).await;
    let pid = strata.process.pid();
    let time = format!("{}", now / 1000);
    let mut table = Vec::new();
    for (name, query, want, names) in cases() {
        for endpoint in ["/api/v1/query", "/api/v1/format_query"] {
            let cpu = cpu_seconds(pid);
            let wall = Instant::now();
            let answer = try_post_form(
                &client,
                &strata.url(endpoint),
                &[("query", &query), ("time", &time)],
            )
            .await;
            // Over the body limit, the server answers 413 and closes the
            // connection without reading the rest; a client still sending
            // (reqwest sends the whole body first) may see the reset instead.
            let (status, body) = match answer {
                Ok(answer) => answer,
                Err(e) if want == 413 => {
                    println!("{endpoint} {name}: connection closed while sending ({e})");
                    (
                        413,
                        serde_json::json!({"errorType": "bad_data", "error": "2 MiB"}),
                    )
                }
                Err(e) => panic!(
                    "{endpoint} {name}: no answer: {e}\n{}",
                    strata.process.logs()
                ),
            };
            let (cpu, wall) = (cpu_seconds(pid) - cpu, wall.elapsed());
            table.push(format!(
                "{endpoint:<22} {name:<22} {:>8} B  {status}  cpu {cpu:.2}s  wall {:.2}s",
                query.len(),
                wall.as_secs_f64()
            ));
            assert_eq!(status, want, "{endpoint} {name}: {body}");
            if want != 200 {
                assert_eq!(body["errorType"], "bad_data", "{endpoint} {name}");
                let message = body["error"].as_str().unwrap();
                assert!(message.contains(names), "{endpoint} {name}: {message}");
            }
            assert!(
                strata.process.is_running(),
                "{endpoint} {name} took the process down\n{}",
                strata.process.logs()
            );
        }
    }
    // A subquery of absurd resolution: refused at once by the sample limit
    // instead of running until the 2-minute timeout.
    for query in ["up[1y:1ms]", "max_over_time(up[1y:1ms])"] {
        let cpu = cpu_seconds(pid);
        let (status, body) = post_form(
            &client,
            &strata.url("/api/v1/query"),
            &[("query", query), ("time", &time)],
        )
        .await;
        table.push(format!(
            "/api/v1/query          {query:<22} {status}  cpu {:.2}s",
            cpu_seconds(pid) - cpu
        ));
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["errorType"], "execution");
        assert!(body["error"].as_str().unwrap().contains("too many samples"));
    }
    println!("{}", table.join("\n"));
    let ready = reqwest::get(strata.url("/ready")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    // Real queries are answered as before.
    let (status, body) = post_form(
        &client,
        &strata.url("/api/v1/query"),
        &[("query", "sum(up)"), ("time", &time)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "1");
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random query: layers of random constructs around a core, some deep, some
/// wide, some malformed (unbalanced), at sizes from a few bytes to 200 KB.
fn random_query(rng: &mut Rng) -> String {
    const OPEN: [(&str, &str); 12] = [
        ("(", ")"),
        ("-(", ")"),
        ("abs(", ")"),
        ("sum by (job) (", ")"),
        ("max_over_time((", ")[5m:1m])"),
        ("rate((", ")[5m:])"),
        ("topk(2, ", ")"),
        ("label_replace(", ", \"a\", \"$1\", \"job\", \"(.*)\")"),
        ("histogram_quantile(0.9, ", ")"),
        ("1 + (", ")"),
        ("(", ") or up"),
        ("clamp_max(", ", 3)"),
    ];
    const CORES: [&str; 6] = [
        "up",
        "1",
        "up{job=~\"a|b\"}",
        "rate(up[5m])",
        "vector(1)",
        "\"s\"",
    ];
    let depth = match rng.below(4) {
        0 => rng.below(10),
        1 => rng.below(600),
        2 => rng.below(5_000),
        _ => rng.below(40_000),
    } as usize;
    let mut open = String::new();
    let mut close = Vec::new();
    for _ in 0..depth {
        let (o, c) = OPEN[rng.below(OPEN.len() as u64) as usize];
        open.push_str(o);
        close.push(c);
    }
    let mut q = open;
    q.push_str(CORES[rng.below(CORES.len() as u64) as usize]);
    // Wide: a chain of binary operators.
    if rng.below(3) == 0 {
        let ops = ["+", "*", " and ", " or ", "/", "^", " > bool "];
        for _ in 0..rng.below(3_000) {
            q.push_str(ops[rng.below(ops.len() as u64) as usize]);
            q.push_str(CORES[rng.below(CORES.len() as u64) as usize]);
        }
    }
    // Sometimes unbalanced: drop some closers.
    let keep = if rng.below(5) == 0 {
        rng.below(close.len() as u64 + 1) as usize
    } else {
        close.len()
    };
    for c in close.iter().rev().take(keep) {
        q.push_str(c);
    }
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_random_deep_and_wide_queries_never_take_the_process_down() {
    // Nested subqueries multiply their work: within the sample estimate, some
    // random ones are expensive. A short timeout keeps the test quick; they
    // are answered 503 `timeout`, which is what the timeout is for.
    let (mut strata, now, client) = start_with_up(&["-target=all", "-querier.timeout=3s"]).await;
    let time = format!("{}", now / 1000);
    let start = format!("{}", now / 1000 - 600);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut statuses = std::collections::BTreeMap::new();
    let total = 3_000;
    let mut sent = 0;
    while sent < total {
        // Eight at a time, to the three endpoints that parse PromQL.
        let batch: Vec<(String, &str)> = (0..8)
            .map(|i| {
                let endpoint = match (sent + i) % 3 {
                    0 => "/api/v1/query",
                    1 => "/api/v1/query_range",
                    _ => "/api/v1/format_query",
                };
                (random_query(&mut rng), endpoint)
            })
            .collect();
        let answers = futures_join(batch.iter().map(|(q, endpoint)| {
            let url = strata.url(endpoint);
            let client = client.clone();
            let form = vec![
                ("query".to_string(), q.clone()),
                ("time".to_string(), time.clone()),
                ("start".to_string(), start.clone()),
                ("end".to_string(), time.clone()),
                ("step".to_string(), "60".to_string()),
            ];
            async move {
                let resp = client
                    .post(url)
                    .header("X-Scope-OrgID", "t")
                    .form(&form)
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        let error_type = serde_json::from_str::<serde_json::Value>(&body)
                            .map(|v| v["errorType"].as_str().unwrap_or("").to_string())
                            .map_err(|e| format!("not JSON ({e}): {body}"));
                        error_type.map(|t| (status, t))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }))
        .await;
        for ((q, endpoint), answer) in batch.iter().zip(answers) {
            let status = answer.unwrap_or_else(|e| {
                panic!(
                    "{endpoint} with a {}-byte query got no answer ({e}); the query began {:?}\n{}",
                    q.len(),
                    &q[..q.len().min(200)],
                    strata.process.logs()
                )
            });
            let (status, error_type) = status;
            assert!(
                matches!(
                    (status, error_type.as_str()),
                    (200, "") | (400, "bad_data") | (422, "execution") | (503, "timeout")
                ),
                "{endpoint}: {status} {error_type} for a {}-byte query beginning {:?}",
                q.len(),
                &q[..q.len().min(200)]
            );
            *statuses.entry(status).or_insert(0usize) += 1;
        }
        sent += batch.len();
        assert!(
            strata.process.is_running(),
            "a random query took the process down\n{}",
            strata.process.logs()
        );
    }
    println!("{sent} random queries, answers by status: {statuses:?}");
    // Some were answered, some refused: the generator covers both sides.
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    let ready = reqwest::get(strata.url("/ready")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

/// Awaits all futures concurrently (the integration crate has no `futures`).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
