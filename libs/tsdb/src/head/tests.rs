use super::*;
use crate::chunk::decode_xor;
use strata_model::{MatchOp, STALE_NAN, STALE_NAN_BITS};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
    points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn decoded(
    head: &Head,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(Labels, Vec<(i64, u64)>)> {
    head.select_chunks(matchers, mint, maxt)
        .into_iter()
        .map(|s| {
            let points = s
                .chunks
                .iter()
                .flat_map(|c| decode_xor(&c.data).unwrap())
                .map(|s| (s.timestamp_ms, s.value.to_bits()))
                .collect();
            (s.labels, points)
        })
        .collect()
}

/// a: m{job="a",inst="1"}, b: m{job="b",inst="2"}, c: m{inst="3"}, d: other{job="a"}.
fn matcher_fixture() -> Head {
    let head = Head::new();
    for l in [
        labels(&[("__name__", "m"), ("job", "a"), ("inst", "1")]),
        labels(&[("__name__", "m"), ("job", "b"), ("inst", "2")]),
        labels(&[("__name__", "m"), ("inst", "3")]),
        labels(&[("__name__", "other"), ("job", "a")]),
    ] {
        head.append(&l, &samples(&[(10, 1.0)])).unwrap();
    }
    head
}

/// Which fixture series ("a".."d", by their `inst` or name) the matchers select.
fn selected(head: &Head, matchers: &[Matcher]) -> String {
    let mut out: Vec<&str> = head
        .series(matchers, i64::MIN, i64::MAX)
        .iter()
        .map(|l| match (l.get("inst"), l.metric_name()) {
            (Some("1"), _) => "a",
            (Some("2"), _) => "b",
            (Some("3"), _) => "c",
            (_, Some("other")) => "d",
            _ => "?",
        })
        .collect();
    out.sort_unstable();
    out.concat()
}

#[test]
fn head_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Head>();
    check::<Arc<Head>>();
}

#[test]
fn append_creates_series_and_select_returns_decodable_chunks() {
    let head = Head::new();
    let l = labels(&[("__name__", "up"), ("job", "x")]);
    let out = head
        .append(&l, &samples(&[(1, 1.0), (2, 0.0), (3, STALE_NAN)]))
        .unwrap();
    assert_eq!(out.appended, 3);
    assert_eq!(head.num_series(), 1);
    let got = decoded(&head, &[Matcher::equal("job", "x")], 0, 10);
    assert_eq!(
        got,
        vec![(
            l.clone(),
            vec![
                (1, 1f64.to_bits()),
                (2, 0f64.to_bits()),
                (3, STALE_NAN_BITS)
            ]
        )]
    );
    // Appending again to the same labels reuses the series.
    head.append(&l, &samples(&[(4, 4.0)])).unwrap();
    assert_eq!(head.num_series(), 1);
    assert_eq!(head.time_range(), Some((1, 4)));
}

#[test]
fn empty_append_creates_nothing() {
    let head = Head::new();
    let out = head.append(&labels(&[("__name__", "m")]), &[]).unwrap();
    assert_eq!(out.appended, 0);
    assert_eq!(head.num_series(), 0);
    assert_eq!(head.time_range(), None);
}

#[test]
fn equality_matchers() {
    let head = matcher_fixture();
    assert_eq!(selected(&head, &[Matcher::equal("job", "a")]), "ad");
    assert_eq!(selected(&head, &[Matcher::equal("job", "zzz")]), "");
    assert_eq!(
        selected(
            &head,
            &[Matcher::equal("__name__", "m"), Matcher::equal("job", "b")]
        ),
        "b"
    );
    assert_eq!(selected(&head, &[Matcher::equal("nope", "x")]), "");
    assert_eq!(selected(&head, &[]), "abcd");
}

#[test]
fn empty_value_matchers_select_series_lacking_the_label() {
    let head = matcher_fixture();
    assert_eq!(selected(&head, &[Matcher::equal("job", "")]), "c");
    assert_eq!(selected(&head, &[m(MatchOp::NotEqual, "job", "")]), "abd");
    assert_eq!(selected(&head, &[m(MatchOp::NotEqual, "job", "a")]), "bc");
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", "a|")]),
        "acd"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexNoMatch, "job", "a")]),
        "bc"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexNoMatch, "job", "a|b")]),
        "c"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexNoMatch, "job", "")]),
        "abd"
    );
    // A label no series has: every series has it as "".
    assert_eq!(selected(&head, &[Matcher::equal("nope", "")]), "abcd");
    assert_eq!(
        selected(&head, &[m(MatchOp::NotEqual, "nope", "x")]),
        "abcd"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "nope", ".*")]),
        "abcd"
    );
    assert_eq!(selected(&head, &[m(MatchOp::RegexMatch, "nope", ".+")]), "");
    // Combined with an intersecting matcher.
    assert_eq!(
        selected(
            &head,
            &[Matcher::equal("__name__", "m"), Matcher::equal("job", "")]
        ),
        "c"
    );
    assert_eq!(
        selected(
            &head,
            &[
                Matcher::equal("__name__", "m"),
                m(MatchOp::NotEqual, "job", "a")
            ]
        ),
        "bc"
    );
}

#[test]
fn regex_matchers() {
    let head = matcher_fixture();
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", "a|b")]),
        "abd"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", "a|zzz")]),
        "ad"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", "[b-z]")]),
        "b"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", ".*")]),
        "abcd"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexMatch, "job", ".+")]),
        "abd"
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexNoMatch, "job", ".*")]),
        ""
    );
    assert_eq!(
        selected(&head, &[m(MatchOp::RegexNoMatch, "job", ".+")]),
        "c"
    );
    assert_eq!(
        selected(
            &head,
            &[
                m(MatchOp::RegexMatch, "__name__", "m|other"),
                m(MatchOp::RegexMatch, "inst", "1|3")
            ]
        ),
        "ac"
    );
}

#[test]
fn postings_are_sorted_ids() {
    let head = matcher_fixture();
    assert_eq!(
        head.postings_for_matchers(&[Matcher::equal("job", "a")]),
        vec![SeriesId(0), SeriesId(3)]
    );
    assert_eq!(
        head.postings_for_matchers(&[]),
        vec![SeriesId(0), SeriesId(1), SeriesId(2), SeriesId(3)]
    );
}

#[test]
fn out_of_order_sample_is_rejected_after_storing_earlier_ones() {
    let head = Head::new();
    let l = labels(&[("__name__", "m"), ("job", "x")]);
    head.append(&l, &samples(&[(10_000, 1.0), (20_000, 2.0)]))
        .unwrap();
    let err = head
        .append(&l, &samples(&[(30_000, 3.0), (25_000, 1.0), (40_000, 4.0)]))
        .unwrap_err();
    assert_eq!(err.appended(), 1);
    assert_eq!(err.reason(), "sample-out-of-order");
    assert_eq!(err.timestamp_ms(), 25_000);
    assert_eq!(err.series(), &l);
    assert!(matches!(
        err,
        AppendError::OutOfOrder {
            latest_ms: 30_000,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains(r#"m{job="x"}"#), "{msg}");
    assert!(msg.contains("1970-01-01T00:00:25.000Z"), "{msg}");
    assert!(msg.contains("1970-01-01T00:00:30.000Z"), "{msg}");
    assert!(msg.contains("out-of-order"), "{msg}");
    let got = decoded(&head, &[], i64::MIN, i64::MAX);
    let ts: Vec<i64> = got[0].1.iter().map(|p| p.0).collect();
    assert_eq!(ts, vec![10_000, 20_000, 30_000]);
}

#[test]
fn duplicates_are_silent_and_new_values_for_a_timestamp_are_rejected() {
    let head = Head::new();
    let l = labels(&[("__name__", "m")]);
    assert_eq!(
        head.append(&l, &samples(&[(5, 1.0), (5, 1.0)]))
            .unwrap()
            .appended,
        1
    );
    assert_eq!(
        head.append(&l, &samples(&[(5, 1.0), (6, f64::NAN)]))
            .unwrap()
            .appended,
        1
    );
    // Same NaN bits: a duplicate. The stale marker is another value.
    assert_eq!(
        head.append(&l, &samples(&[(6, f64::NAN)]))
            .unwrap()
            .appended,
        0
    );
    let err = head.append(&l, &samples(&[(6, STALE_NAN)])).unwrap_err();
    assert_eq!(err.reason(), "new-value-for-timestamp");
    assert_eq!(err.appended(), 0);
    // 0.0 and -0.0 differ in bits.
    head.append(&l, &samples(&[(7, 0.0)])).unwrap();
    let err = head.append(&l, &samples(&[(7, -0.0)])).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::DuplicateTimestamp {
                timestamp_ms: 7,
                latest_ms: 7,
                appended: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("m{}"), "{err}");
    assert!(
        err.to_string().contains("1970-01-01T00:00:00.007Z"),
        "{err}"
    );
    // The order check comes first; the sample before the bad one stays.
    let err = head
        .append(&l, &samples(&[(8, 8.0), (7, 0.0)]))
        .unwrap_err();
    assert_eq!(err.reason(), "sample-out-of-order");
    assert_eq!(err.appended(), 1);
    let got = decoded(&head, &[], i64::MIN, i64::MAX);
    let ts: Vec<i64> = got[0].1.iter().map(|p| p.0).collect();
    assert_eq!(ts, vec![5, 6, 7, 8]);
}

#[test]
fn chunks_are_cut_at_120_samples() {
    let head = Head::new();
    let l = labels(&[("__name__", "m")]);
    let points: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, i as f64)).collect();
    head.append(&l, &samples(&points)).unwrap();
    let got = head.select_chunks(&[], i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    let chunks = &got[0].chunks;
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| decode_xor(&c.data).unwrap().len())
        .collect();
    assert_eq!(sizes, vec![120, 120, 10]);
    let ranges: Vec<(i64, i64)> = chunks.iter().map(|c| (c.min_time, c.max_time)).collect();
    assert_eq!(
        ranges,
        vec![(0, 119_000), (120_000, 239_000), (240_000, 249_000)]
    );
    // A full open chunk is cut only when the next sample arrives.
    let head = Head::new();
    head.append(&l, &samples(&points[..120])).unwrap();
    assert_eq!(
        head.select_chunks(&[], i64::MIN, i64::MAX)[0].chunks.len(),
        1
    );
    head.append(&l, &samples(&points[120..121])).unwrap();
    assert_eq!(
        head.select_chunks(&[], i64::MIN, i64::MAX)[0].chunks.len(),
        2
    );
}

#[test]
fn time_range_filters_chunks_and_series() {
    let head = Head::new();
    let early = labels(&[("__name__", "early"), ("zone", "z1")]);
    let late = labels(&[("__name__", "late"), ("rack", "r1")]);
    let points: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, 1.0)).collect();
    head.append(&early, &samples(&points)).unwrap();
    head.append(&late, &samples(&[(1_000_000, 1.0), (1_001_000, 2.0)]))
        .unwrap();

    // Only the second chunk of `early` overlaps.
    let got = head.select_chunks(&[], 125_000, 130_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, early);
    assert_eq!(got[0].chunks.len(), 1);
    assert_eq!(got[0].chunks[0].min_time, 120_000);
    // Boundaries are inclusive.
    assert_eq!(
        head.select_chunks(&[], 119_000, 119_000)[0].chunks[0].max_time,
        119_000
    );
    assert_eq!(head.select_chunks(&[], 249_000, 1_000_000).len(), 2);
    assert!(head.select_chunks(&[], 250_000, 999_999).is_empty());
    assert!(head.select_chunks(&[], 10, 5).is_empty());

    assert_eq!(head.series(&[], 1_000_500, 2_000_000), vec![late.clone()]);
    assert_eq!(
        head.label_names(&[], 1_000_500, 2_000_000),
        vec!["__name__", "rack"]
    );
    assert_eq!(head.label_names(&[], 0, 10), vec!["__name__", "zone"]);
    assert_eq!(
        head.label_names(&[], i64::MIN, i64::MAX),
        vec!["__name__", "rack", "zone"]
    );
    assert_eq!(head.label_values("__name__", &[], 0, 10), vec!["early"]);
    assert_eq!(
        head.label_values("__name__", &[], i64::MIN, i64::MAX),
        vec!["early", "late"]
    );
    assert!(head.label_names(&[], 500_000, 600_000).is_empty());
    // Sorted by labels: "early" < "late".
    let all = head.select_chunks(&[], i64::MIN, i64::MAX);
    assert_eq!(
        all.iter().map(|s| s.labels.clone()).collect::<Vec<_>>(),
        vec![early, late]
    );
}

#[test]
fn label_names_and_values_with_matchers() {
    let head = matcher_fixture();
    let all = (i64::MIN, i64::MAX);
    assert_eq!(
        head.label_names(&[], all.0, all.1),
        vec!["__name__", "inst", "job"]
    );
    assert_eq!(
        head.label_names(&[Matcher::equal("__name__", "other")], all.0, all.1),
        vec!["__name__", "job"]
    );
    assert_eq!(head.label_values("job", &[], all.0, all.1), vec!["a", "b"]);
    assert_eq!(
        head.label_values("job", &[Matcher::equal("inst", "2")], all.0, all.1),
        vec!["b"]
    );
    assert_eq!(
        head.label_values("inst", &[Matcher::equal("job", "a")], all.0, all.1),
        vec!["1"]
    );
    assert!(head.label_values("nope", &[], all.0, all.1).is_empty());
    assert!(head
        .label_values("nope", &[Matcher::equal("job", "a")], all.0, all.1)
        .is_empty());
    assert!(head
        .label_values("job", &[Matcher::equal("job", "zzz")], all.0, all.1)
        .is_empty());
    // Outside the head's range: nothing.
    assert!(head.label_values("job", &[], 100, 200).is_empty());
    assert_eq!(head.label_values("job", &[], 5, 200), vec!["a", "b"]);
}

#[test]
fn label_strings_are_interned_once() {
    let head = Head::new();
    for i in 0..10 {
        let inst = i.to_string();
        head.append(
            &labels(&[("__name__", "m"), ("job", "j"), ("inst", &inst)]),
            &samples(&[(1, 1.0)]),
        )
        .unwrap();
    }
    // __name__, m, job, j, inst, and ten instance values.
    assert_eq!(head.symbols.read().strings.len(), 15);
    let index = head.index.read();
    let (name_key, _) = index.postings.get_key_value("job").unwrap();
    let symbols = head.symbols.read();
    let id = symbols.lookup("job").unwrap();
    assert!(Arc::ptr_eq(name_key, &symbols.strings[id as usize]));
}

#[test]
fn concurrent_appends_and_queries() {
    let head = Arc::new(Head::new());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let head = Arc::clone(&head);
            std::thread::spawn(move || {
                for t in 0..300i64 {
                    for s in 0..20 {
                        let inst = s.to_string();
                        // Shared series (all writers) and own series.
                        let shared = labels(&[("__name__", "shared"), ("inst", &inst)]);
                        let _ = head.append(&shared, &samples(&[(t, t as f64)]));
                        let own_job = format!("w{w}");
                        let own =
                            labels(&[("__name__", "own"), ("job", &own_job), ("inst", &inst)]);
                        head.append(&own, &samples(&[(t, 1.0)])).unwrap();
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let head = Arc::clone(&head);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    for s in head.select_chunks(&[Matcher::equal("__name__", "own")], 0, 1000) {
                        for c in s.chunks {
                            decode_xor(&c.data).unwrap();
                        }
                    }
                    let _ = head.label_values("job", &[], 0, 1000);
                    let _ = head.series(&[m(MatchOp::RegexMatch, "job", "w1|w2")], 0, 1000);
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    assert_eq!(head.num_series(), 20 + 4 * 20);
    let own = decoded(&head, &[Matcher::equal("__name__", "own")], 0, 1000);
    assert_eq!(own.len(), 80);
    assert!(own.iter().all(|(_, points)| points.len() == 300));
    // Shared series: every timestamp stored once, in order, whatever the interleaving.
    for (_, points) in decoded(&head, &[Matcher::equal("__name__", "shared")], 0, 1000) {
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
    }
    assert_eq!(
        head.label_values("job", &[], 0, 1000),
        vec!["w0", "w1", "w2", "w3"]
    );
}

mod matcher_model {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just("x"), Just("y"), Just("z")]
    }

    fn matcher() -> impl Strategy<Value = Matcher> {
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::RegexMatch),
            Just(MatchOp::RegexNoMatch),
        ];
        let name = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")];
        let value = prop_oneof![
            Just(""),
            Just("x"),
            Just("y"),
            Just("x|y"),
            Just("x|"),
            Just(".*"),
            Just(".+"),
            Just("[xy]"),
        ];
        (op, name, value).prop_map(|(op, name, value)| Matcher::new(op, name, value).unwrap())
    }

    proptest! {
        /// The postings evaluation agrees with checking every series' labels directly.
        #[test]
        fn postings_agree_with_brute_force(
            series in proptest::collection::vec((value(), value(), value()), 1..40),
            matchers in proptest::collection::vec(matcher(), 0..4),
        ) {
            let head = Head::new();
            let mut all = Vec::new();
            for (i, (a, b, c)) in series.iter().enumerate() {
                let id = i.to_string();
                let l = labels(&[("id", &id), ("a", a), ("b", b), ("c", c)]);
                head.append(&l, &samples(&[(1, 1.0)])).unwrap();
                all.push(l);
            }
            let mut want: Vec<Labels> = all
                .into_iter()
                .filter(|l| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .collect();
            want.sort();
            prop_assert_eq!(head.series(&matchers, 0, 10), want);
        }
    }
}

/// Per-series memory stays small: the fixed part of a series, before its label
/// symbols and chunk bytes.
#[test]
fn series_struct_is_small() {
    let fixed = std::mem::size_of::<MemSeries>();
    println!(
        "MemSeries {fixed} bytes, ChunkList {}",
        std::mem::size_of::<ChunkList>()
    );
    assert!(fixed <= 160, "{fixed}");
}

#[test]
fn append_errors_give_the_index_of_the_rejected_sample() {
    let head = Head::new();
    let l = labels(&[("__name__", "m")]);
    let err = head
        .append(&l, &samples(&[(1, 1.0), (2, 2.0), (2, 2.0), (1, 0.0)]))
        .unwrap_err();
    assert_eq!(err.appended(), 2);
    assert_eq!(err.index(), 3);
}

#[test]
fn truncation_drops_old_chunks_and_empty_series_and_bounds_appends() {
    let head = Head::new();
    let old = labels(&[("__name__", "old")]);
    let live = labels(&[("__name__", "live"), ("job", "x")]);
    let many: Vec<(i64, f64)> = (0..300).map(|i| (i * 10, i as f64)).collect();
    head.append(&old, &samples(&[(1, 1.0), (2, 2.0)])).unwrap();
    head.append(&live, &samples(&many)).unwrap();
    head.set_min_valid_time(1_500);
    let stats = head.truncate_before(1_500);
    assert_eq!(stats.series_dropped, 1);
    assert!(stats.chunks_dropped >= 2, "{stats:?}");
    assert!(!head.contains(&old));
    assert_eq!(head.num_series(), 1);
    assert_eq!(head.num_series_with("__name__", "live"), 1);
    assert_eq!(head.num_series_with("__name__", "old"), 0);
    let (min, max) = head.time_range().unwrap();
    assert!((1_200..1_500).contains(&min), "{min}");
    assert_eq!(max, 2_990);
    // Whole chunks are kept: the one reaching 1500 still has older samples.
    let got = decoded(&head, &[], i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.last().map(|p| p.0), Some(2_990));
    let err = head.append(&old, &samples(&[(3, 3.0)])).unwrap_err();
    assert_eq!(err.reason(), "sample-out-of-bounds");
    assert_eq!(err.index(), 0);
    head.append(&old, &samples(&[(2_000, 3.0)])).unwrap();
    assert_eq!(head.num_series(), 2);
    assert_eq!(
        head.select_chunks(&[Matcher::equal("__name__", "old")], 0, i64::MAX)
            .len(),
        1
    );
    assert_eq!(head.series_refs().len(), 2);
}

#[test]
fn heads_sharing_strings_hold_each_label_string_once() {
    let strings = Arc::new(SharedStrings::new());
    let tenant_a = Head::with_strings(strings.clone());
    let tenant_b = Head::with_strings(strings.clone());
    let series = labels(&[("__name__", "http_requests_total"), ("job", "api")]);
    tenant_a.append(&series, &samples(&[(1, 1.0)])).unwrap();
    tenant_b.append(&series, &samples(&[(1, 2.0)])).unwrap();
    // Four strings, held by both heads, stored once.
    assert_eq!(strings.len(), 4);
    tenant_b
        .append(
            &labels(&[("__name__", "http_requests_total"), ("job", "db")]),
            &samples(&[(1, 3.0)]),
        )
        .unwrap();
    assert_eq!(strings.len(), 5);
    // Each head still answers with its own series and values.
    assert_eq!(
        tenant_a.label_values("job", &[], i64::MIN, i64::MAX),
        vec!["api"]
    );
    assert_eq!(
        tenant_b.label_values("job", &[], i64::MIN, i64::MAX),
        vec!["api", "db"]
    );

    drop(tenant_a);
    assert_eq!(strings.sweep(), 0, "tenant b still holds every string");
    drop(tenant_b);
    assert_eq!(strings.sweep(), 5);
}

#[test]
fn label_values_of_many_values_come_sorted_and_select_their_series() {
    let head = Head::new();
    for i in (0..50).rev() {
        head.append(
            &labels(&[("__name__", "m"), ("pod", &format!("pod-{i:02}"))]),
            &samples(&[(1, 1.0)]),
        )
        .unwrap();
    }
    let values = head.label_values("pod", &[], i64::MIN, i64::MAX);
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(values.len(), 50);
    assert_eq!(values, sorted);
    // Past the short list, each value still selects its own series, and a
    // regex over the values their union.
    assert_eq!(
        head.postings_for_matchers(&[m(MatchOp::Equal, "pod", "pod-07")]),
        vec![SeriesId(42)]
    );
    assert_eq!(
        head.postings_for_matchers(&[m(MatchOp::RegexMatch, "pod", "pod-0[0-2]")]),
        vec![SeriesId(47), SeriesId(48), SeriesId(49)]
    );
    assert_eq!(head.num_series_with("__name__", "m"), 50);
}

// Out-of-order window (issue 14).

fn points(head: &Head, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    decoded(head, &[], mint, maxt)
        .into_iter()
        .flat_map(|(_, p)| p)
        // Whole in-order chunks overlapping the range come back: keep the range.
        .filter(|&(t, _)| mint <= t && t <= maxt)
        .map(|(t, bits)| (t, f64::from_bits(bits)))
        .collect()
}

/// A head with window `window` holding `m` with in-order samples at
/// 100, 200, …, 1000 (value t / 100).
fn ooo_head(window: i64) -> (Head, Labels) {
    let head = Head::new();
    head.set_out_of_order_window(window);
    let l = labels(&[("__name__", "m")]);
    let s: Vec<(i64, f64)> = (1..=10).map(|i| (i * 100, i as f64)).collect();
    head.append(&l, &samples(&s)).unwrap();
    (head, l)
}

#[test]
fn without_a_window_older_samples_are_out_of_order_as_before() {
    let (head, l) = ooo_head(0);
    let err = head.append(&l, &samples(&[(950, 9.5)])).unwrap_err();
    assert_eq!(err.reason(), "sample-out-of-order");
    assert_eq!(points(&head, 0, 2000).len(), 10);
}

#[test]
fn late_samples_within_the_window_merge_in_time_order() {
    let (head, l) = ooo_head(500);
    let out = head
        .append(
            &l,
            &samples(&[(950, 9.5), (550, 5.5), (1100, 11.0), (1050, 10.5)]),
        )
        .unwrap();
    assert_eq!(out.appended, 4);
    // 1100 is in order; 1050 is older than it, so out of order too.
    assert_eq!(out.out_of_order, 3);
    assert_eq!(head.out_of_order_appended(), 3);
    // A push refused part-way still counts the late samples it stored.
    let err = head
        .append(&l, &samples(&[(960, 9.6), (950, 1.0)]))
        .unwrap_err();
    assert_eq!(err.appended(), 1);
    assert_eq!(head.out_of_order_appended(), 4);
    let got = points(&head, 0, 2000);
    let mut want: Vec<(i64, f64)> = (1..=10).map(|i| (i * 100, i as f64)).collect();
    want.extend([
        (550, 5.5),
        (950, 9.5),
        (960, 9.6),
        (1050, 10.5),
        (1100, 11.0),
    ]);
    want.sort_by_key(|p| p.0);
    assert_eq!(got, want);
    // Selections bounded inside the range see only their part, merged.
    assert_eq!(
        points(&head, 500, 600),
        vec![(500, 5.0), (550, 5.5), (600, 6.0)]
    );
    assert_eq!(head.time_range(), Some((100, 1100)));
}

#[test]
fn the_window_is_measured_from_the_heads_newest_sample_edges_included() {
    let (head, l) = ooo_head(300);
    // Another series moves the head's newest sample to 2000: the window now
    // reaches back to 1700 for every series, as in Prometheus.
    head.append(&labels(&[("__name__", "other")]), &samples(&[(2000, 1.0)]))
        .unwrap();
    head.append(&l, &samples(&[(1700, 17.0)])).unwrap();
    let err = head.append(&l, &samples(&[(1699, 0.0)])).unwrap_err();
    assert_eq!(err.reason(), "sample-too-old");
    match &err {
        AppendError::TooOld {
            timestamp_ms,
            oldest_ms,
            window_ms,
            series,
            ..
        } => {
            assert_eq!((*timestamp_ms, *oldest_ms, *window_ms), (1699, 1700, 300));
            assert_eq!(series, &l);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with("sample timestamp too old"), "{message}");
    assert!(message.contains("series m{}"), "{message}");
    // 1700 went in (in order); nothing older than the window did.
    assert!(points(&head, 1001, 1699).is_empty());
}

#[test]
fn duplicates_out_of_order_are_skipped_or_refused_like_in_order_ones() {
    let (head, l) = ooo_head(1000);
    // Same timestamp and value as an in-order sample: skipped silently.
    let out = head.append(&l, &samples(&[(500, 5.0)])).unwrap();
    assert_eq!(out.appended, 0);
    // Another value at an in-order sample's timestamp: refused.
    let err = head.append(&l, &samples(&[(500, 7.0)])).unwrap_err();
    assert_eq!(err.reason(), "new-value-for-timestamp");
    assert_eq!(err.timestamp_ms(), 500);
    // The same for an out-of-order sample's timestamp.
    head.append(&l, &samples(&[(450, 4.5)])).unwrap();
    assert_eq!(
        head.append(&l, &samples(&[(450, 4.5)])).unwrap().appended,
        0
    );
    let err = head.append(&l, &samples(&[(450, 9.0)])).unwrap_err();
    assert_eq!(err.reason(), "new-value-for-timestamp");
    // Each timestamp once in the answer.
    let got = points(&head, 0, 2000);
    assert_eq!(got.len(), 11);
    assert!(got.contains(&(450, 4.5)) && got.contains(&(500, 5.0)));
}

/// The samples of `part` a block cut from `head` in `[mint, maxt]` holds.
fn part_points(head: &Head, mint: i64, maxt: i64, part: BlockPart) -> Vec<(i64, f64)> {
    head.block_chunks(mint, maxt, part)
        .iter()
        .flat_map(|s| &s.chunks)
        .flat_map(|c| decode_xor(&c.data).unwrap())
        .filter(|s| mint <= s.timestamp_ms && s.timestamp_ms <= maxt)
        .map(|s| (s.timestamp_ms, s.value))
        .collect()
}

#[test]
fn late_samples_behind_the_blocks_bound_are_kept_apart_for_blocks_of_their_own() {
    let (head, l) = ooo_head(10_000);
    // Blocks hold everything before 400.
    head.set_min_valid_time(400);
    head.append(&l, &samples(&[(350, 3.5), (150, 1.5), (450, 4.5)]))
        .unwrap();
    let all = points(&head, 0, 2000);
    assert!(all.contains(&(150, 1.5)) && all.contains(&(350, 3.5)) && all.contains(&(450, 4.5)));
    // The head's next in-order block holds 450 (ahead of the bound), not the
    // two behind it; no late block holds anything before a late cut.
    let in_order = part_points(&head, 0, 2000, BlockPart::InOrder);
    assert!(in_order.contains(&(450, 4.5)), "{in_order:?}");
    assert!(
        !in_order.iter().any(|p| p.0 == 150 || p.0 == 350),
        "{in_order:?}"
    );
    assert!(part_points(&head, 0, 2000, BlockPart::Late).is_empty());
    assert_eq!(head.oldest_late_sample(), Some(150));
    assert_eq!(head.earliest_sample_from(i64::MIN), Some(100));
    // Truncation behind the next in-order block keeps them.
    head.truncate_before(500);
    let all = points(&head, 0, 2000);
    assert!(all.contains(&(150, 1.5)) && !all.iter().any(|p| p.0 == 450));
    // A late cut sets them aside; one that comes meanwhile waits for the
    // next cut, and a duplicate of one set aside is still found.
    assert_eq!(head.begin_late_cut(), Some((150, 350)));
    head.append(&l, &samples(&[(250, 2.5)])).unwrap();
    let err = head.append(&l, &samples(&[(150, 9.0)])).unwrap_err();
    assert_eq!(err.reason(), "new-value-for-timestamp");
    assert_eq!(
        part_points(&head, 0, 2000, BlockPart::Late),
        vec![(150, 1.5), (350, 3.5)]
    );
    assert!(points(&head, 0, 2000).contains(&(250, 2.5)));
    // The block of [0, 300) is in place: 150 leaves the head, 350 stays set
    // aside, 250 waits.
    head.finish_late_cut(300);
    assert_eq!(
        part_points(&head, 0, 2000, BlockPart::Late),
        vec![(350, 3.5)]
    );
    assert_eq!(head.oldest_late_sample(), Some(250));
    let all = points(&head, 0, 400);
    assert!(!all.iter().any(|p| p.0 == 150));
    assert!(all.contains(&(250, 2.5)) && all.contains(&(350, 3.5)));
    // The next cut takes both; once written, none is left.
    assert_eq!(head.begin_late_cut(), Some((250, 350)));
    head.finish_late_cut(i64::MAX);
    assert_eq!(head.oldest_late_sample(), None);
    assert_eq!(head.begin_late_cut(), None);
    assert!(points(&head, 0, 399).iter().all(|p| p.0 % 100 == 0));
}

#[test]
fn without_may_go_behind_late_samples_stop_at_the_blocks_bound() {
    // A head whose window does not reach behind the bound refuses there as
    // too old, as before.
    let (head, l) = ooo_head(700);
    head.set_min_valid_time(400);
    let err = head.append(&l, &samples(&[(299, 1.0)])).unwrap_err();
    assert_eq!(err.reason(), "sample-too-old");
    head.append(&l, &samples(&[(399, 1.0)])).unwrap();
    assert_eq!(head.oldest_late_sample(), Some(399));
}

#[test]
fn an_empty_head_takes_nothing_out_of_order() {
    let head = Head::new();
    head.set_out_of_order_window(1000);
    let l = labels(&[("__name__", "m")]);
    let (series, _) = head.get_or_create_series(&l);
    // Older than the ingester's bound: nothing in the head to be late against.
    let err = head
        .append_to_from(&series, &samples(&[(100, 1.0)]), 500)
        .unwrap_err();
    assert_eq!(err.reason(), "sample-too-old");
}

#[test]
fn many_late_samples_fill_several_chunks_and_read_back_sorted() {
    let head = Head::new();
    head.set_out_of_order_window(1_000_000);
    let l = labels(&[("__name__", "m")]);
    // Even timestamps in order, then odd ones from newest to oldest: more
    // than the buffer holds, more than a chunk's worth once merged.
    let even: Vec<(i64, f64)> = (0..300).map(|i| (i * 2, i as f64)).collect();
    head.append(&l, &samples(&even)).unwrap();
    let odd: Vec<(i64, f64)> = (0..299).rev().map(|i| (i * 2 + 1, -(i as f64))).collect();
    let out = head.append(&l, &samples(&odd)).unwrap();
    assert_eq!(out.out_of_order, 299);
    let got = points(&head, i64::MIN, i64::MAX);
    assert_eq!(got.len(), 599);
    assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    let chunks = &head.select_chunks(&[], i64::MIN, i64::MAX)[0].chunks;
    assert!(chunks.len() >= 5);
    assert!(chunks.windows(2).all(|w| w[0].max_time < w[1].min_time));
    // Duplicates of sealed out-of-order samples are still found.
    let err = head.append(&l, &samples(&[(1, 42.0)])).unwrap_err();
    assert_eq!(err.reason(), "new-value-for-timestamp");
}

#[test]
fn truncation_drops_late_samples_exactly_and_keeps_in_order_chunks_whole() {
    let (head, l) = ooo_head(1000);
    head.append(&l, &samples(&[(550, 5.5), (650, 6.5)]))
        .unwrap();
    assert_eq!(head.earliest_sample_from(520), Some(550));
    head.truncate_before(600);
    let got = points(&head, i64::MIN, i64::MAX);
    // The in-order chunk reaches past 600, so it stays whole (its samples
    // before 600 are in the block already); the late 550 is gone, 650 stays.
    assert!(got.contains(&(100, 1.0)));
    assert!(!got.iter().any(|p| p.0 == 550));
    assert!(got.contains(&(650, 6.5)));
    head.truncate_before(2000);
    assert_eq!(head.num_series(), 0);
    assert_eq!(head.time_range(), None);
}

#[test]
fn series_and_label_queries_see_series_with_only_late_samples_in_range() {
    let (head, _) = ooo_head(1000);
    // A new series older than the ingester's bound for in-order samples
    // (500) but within the window: all its samples are out of order.
    let late = labels(&[("__name__", "late")]);
    let (series, _) = head.get_or_create_series(&late);
    let out = head
        .append_to_from(&series, &samples(&[(150, 1.5)]), 500)
        .unwrap();
    assert_eq!(out.out_of_order, 1);
    let only = [Matcher::equal("__name__", "late")];
    assert_eq!(head.series(&only, 140, 160), vec![late.clone()]);
    assert_eq!(head.label_values("__name__", &[], 140, 160).len(), 2);
    assert!(head.series(&only, 160, 190).is_empty());
    assert_eq!(points(&head, 140, 160), vec![(150, 1.5)]);
}

#[test]
fn replay_takes_back_logged_late_samples_whatever_the_window_now() {
    let (head, l) = ooo_head(1000);
    head.append(&l, &samples(&[(550, 5.5)])).unwrap();
    let replayed = Head::new();
    let (series, _) = replayed.get_or_create_series(&l);
    let logged: Vec<(i64, f64)> = (1..=10)
        .map(|i| (i * 100, i as f64))
        .chain([(550, 5.5)])
        .collect();
    // The window was lowered to 0 since: acknowledged samples stay.
    replayed
        .append_replayed(&series, &samples(&logged))
        .unwrap();
    assert_eq!(points(&replayed, 0, 2000), points(&head, 0, 2000));
    // The blocks' bound still keeps out what blocks hold.
    let bounded = Head::new();
    bounded.set_min_valid_time(600);
    let (series, _) = bounded.get_or_create_series(&l);
    let mut rest: &[Sample] = &samples(&logged);
    let mut rejected = 0;
    while !rest.is_empty() {
        match bounded.append_replayed(&series, rest) {
            Ok(_) => break,
            Err(e) => {
                rejected += 1;
                rest = &rest[e.index() + 1..];
            }
        }
    }
    assert_eq!(rejected, 6);
    assert_eq!(points(&bounded, 0, 2000).len(), 5);
    // Late samples logged as behind the bound are taken back behind it,
    // for a late block.
    bounded
        .append_replayed_late(&series, &samples(&[(550, 5.5), (250, 2.5)]))
        .unwrap();
    assert_eq!(bounded.oldest_late_sample(), Some(250));
    assert!(points(&bounded, 0, 2000).contains(&(250, 2.5)));
    assert_eq!(
        part_points(&bounded, 0, 2000, BlockPart::InOrder).len(),
        5,
        "the late samples are in no in-order block"
    );
}

// Planning appends before making them (WAL first, issue 21).

/// A small deterministic generator (xorshift), so the mixes below are the
/// same in every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn a_plan_changes_nothing_and_its_outcomes_are_the_appends_outcomes() {
    for seed in 1..=40u64 {
        let mut mix = Mix(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let head = Head::new();
        head.set_out_of_order_window(if seed % 3 == 0 { 0 } else { 400 });
        head.set_min_valid_time(100);
        let names = ["a", "b", "c", "d"];
        // Some series exist before the push, with a few samples.
        for name in &names[..2] {
            let l = labels(&[("__name__", name)]);
            head.append(&l, &samples(&[(1000, 1.0), (1100, 2.0)]))
                .unwrap();
        }
        let before = points(&head, i64::MIN, i64::MAX);
        // One push: entries for existing and new series, some repeated, with
        // in-order, late, duplicate, conflicting and too old samples.
        let mut entries = Vec::new();
        for _ in 0..6 {
            let name = names[mix.next(4) as usize];
            let n = 1 + mix.next(5) as usize;
            let points: Vec<(i64, f64)> = (0..n)
                .map(|_| (500 + 100 * mix.next(12) as i64, mix.next(3) as f64))
                .collect();
            entries.push((labels(&[("__name__", name)]), samples(&points)));
        }
        let mut plan = AppendPlan::new();
        let mut reserved: HashMap<Labels, SeriesRef> = HashMap::new();
        let mut planned = Vec::new();
        for (l, s) in &entries {
            let held = head.get_series(l);
            let target = match (&held, reserved.get(l)) {
                (Some(h), _) => PlanSeries::Held(h),
                (None, Some(r)) => PlanSeries::New(*r),
                (None, None) => {
                    let r = head.reserve_series_ref();
                    reserved.insert(l.clone(), r);
                    PlanSeries::New(r)
                }
            };
            planned.push(
                head.plan_append(&mut plan, target, s, 300, || l.clone())
                    .map_err(|e| (e.index(), e.appended(), e.reason())),
            );
        }
        // Nothing of the push is visible, and no series was created.
        assert_eq!(head.num_series(), 2, "seed {seed}");
        assert_eq!(points(&head, i64::MIN, i64::MAX), before, "seed {seed}");
        // The same entries appended: the same outcomes, entry by entry.
        for ((l, s), want) in entries.iter().zip(&planned) {
            let target = match reserved.get(l) {
                Some(r) => head.create_series(*r, l),
                None => head.get_series(l).unwrap(),
            };
            let got = head
                .append_to_from(&target, s, 300)
                .map_err(|e| (e.index(), e.appended(), e.reason()));
            assert_eq!(&got, want, "seed {seed}: {l} {s:?}");
        }
    }
}

#[test]
fn a_plan_of_many_new_series_with_many_samples_is_linear() {
    // 300 new series of 600 in-order samples each, one push: a lookup that
    // scanned every planned sample for every in-order one would take
    // minutes here; planned once, quickly.
    let head = Head::new();
    let mut plan = AppendPlan::with_capacity(300);
    let s: Vec<Sample> = (0..600).map(|i| Sample::new(i * 1000, 1.0)).collect();
    for i in 0..300 {
        let l = labels(&[("__name__", "m"), ("i", &i.to_string())]);
        let r = head.reserve_series_ref();
        let out = head
            .plan_append(&mut plan, PlanSeries::New(r), &s, i64::MIN, || l.clone())
            .unwrap();
        assert_eq!(out.appended, 600);
    }
    // A late duplicate among them is still found.
    head.set_out_of_order_window(1_000_000);
    let r = head.reserve_series_ref();
    let l = labels(&[("__name__", "late")]);
    let mixed = samples(&[(5000, 1.0), (3000, 2.0), (9000, 3.0), (3000, 4.0)]);
    let err = head
        .plan_append(&mut plan, PlanSeries::New(r), &mixed, i64::MIN, || {
            l.clone()
        })
        .unwrap_err();
    assert_eq!((err.index(), err.reason()), (3, "new-value-for-timestamp"));
}
