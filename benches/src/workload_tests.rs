//! Tests of the generator's series (kept out of workload.rs, which the
//! criterion benches include by path).

use crate::workload::{make_series, make_series_with, metric_names, series_labels, Rng};
use prost::Message;
use strata_proto::prometheus::WriteRequest;

#[test]
fn encoded_bodies_decode_as_write_requests() {
    let names = metric_names();
    assert_eq!(names.len(), 100);
    let mut rng = Rng::new(7);
    let mut series: Vec<_> = (0..250)
        .map(|i| make_series(&names, i, 0, &mut rng))
        .collect();
    let mut prev: Vec<f64> = Vec::new();
    for round in 0..3i64 {
        let mut body = Vec::new();
        let ts = 1_700_000_000_000 + round * 15_000;
        for s in &mut series {
            s.encode_next(ts, 15.0, &mut rng, &mut body);
        }
        let req = WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 250);
        for (i, t) in req.timeseries.iter().enumerate() {
            let want = series_labels(&names, i, 0);
            let got: Vec<(&str, &str)> = t
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            let want: Vec<(&str, &str)> = want.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(got, want);
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "labels sorted");
            assert_eq!(t.samples.len(), 1);
            assert_eq!(t.samples[0].timestamp, ts);
            if names[i % 100].1 && !prev.is_empty() {
                assert!(t.samples[0].value >= prev[i], "counters never decrease");
            }
        }
        prev = req.timeseries.iter().map(|t| t.samples[0].value).collect();
    }
}

#[test]
fn ha_labels_are_added_in_label_order() {
    let names = metric_names();
    let mut rng = Rng::new(7);
    let ha = [
        ("__replica__", "r1".to_string()),
        ("cluster", "bench".to_string()),
    ];
    let mut body = Vec::new();
    for i in 0..200 {
        make_series_with(&names, i, 0, &ha, &mut rng).encode_next(1_000, 15.0, &mut rng, &mut body);
    }
    let req = WriteRequest::decode(body.as_slice()).unwrap();
    for (i, t) in req.timeseries.iter().enumerate() {
        let got: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "labels sorted: {got:?}"
        );
        assert_eq!(got.len(), series_labels(&names, i, 0).len() + 2);
        assert!(t
            .labels
            .iter()
            .any(|l| l.name == "__replica__" && l.value == "r1"));
    }
}

#[test]
fn generations_make_new_series() {
    let names = metric_names();
    assert_ne!(series_labels(&names, 5, 0), series_labels(&names, 5, 1));
    assert_eq!(series_labels(&names, 5, 1), series_labels(&names, 5, 1));
}

#[test]
fn histogram_buckets_are_cumulative_and_count_is_inf() {
    use crate::workload::{HISTOGRAM, HISTOGRAM_LE};
    let names = metric_names();
    let counters = names.iter().filter(|(_, c)| *c).count();
    assert_eq!(counters, 74, "60 counters and the histogram's 14 series");
    let mut rng = Rng::new(3);
    // Three scrape targets: every series of each.
    let mut series: Vec<_> = (0..300)
        .map(|i| make_series(&names, i, 0, &mut rng))
        .collect();
    for round in 0..20i64 {
        let mut body = Vec::new();
        for s in &mut series {
            s.encode_next(
                1_700_000_000_000 + round * 15_000,
                15.0,
                &mut rng,
                &mut body,
            );
        }
        let req = WriteRequest::decode(body.as_slice()).unwrap();
        for target in 0..3 {
            let mut buckets: Vec<(f64, f64)> = Vec::new();
            let mut count = None;
            for t in &req.timeseries[target * 100..(target + 1) * 100] {
                let label = |n: &str| {
                    t.labels
                        .iter()
                        .find(|l| l.name == n)
                        .map(|l| l.value.clone())
                };
                let name = label("__name__").unwrap();
                let v = t.samples[0].value;
                if name == format!("{HISTOGRAM}_bucket") {
                    let le = label("le").expect("a bucket has le");
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    buckets.push((le, v));
                } else if name == format!("{HISTOGRAM}_count") {
                    count = Some(v);
                    assert!(label("le").is_none());
                }
            }
            assert_eq!(buckets.len(), HISTOGRAM_LE.len());
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{buckets:?}");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "cumulative: {buckets:?}"
            );
            assert!(
                buckets[0].1 < buckets[11].1,
                "observations spread over buckets: {buckets:?}"
            );
            assert_eq!(Some(buckets[11].1), count, "+Inf bucket = _count");
        }
    }
}

#[test]
fn pushes_at_different_times_hold_the_same_values() {
    // What `compare` relies on: the values depend on the round, not the time.
    let names = metric_names();
    let values = |t0: i64| {
        let mut rng = Rng::new(1);
        let mut series: Vec<_> = (0..200)
            .map(|i| make_series(&names, i, 0, &mut rng))
            .collect();
        let mut out = Vec::new();
        for round in 0..3 {
            let mut body = Vec::new();
            for s in &mut series {
                s.encode_next(t0 + round * 15_000, 15.0, &mut rng, &mut body);
            }
            let req = WriteRequest::decode(body.as_slice()).unwrap();
            out.extend(req.timeseries.iter().map(|t| t.samples[0].value));
        }
        out
    };
    assert_eq!(values(1_700_000_000_000), values(1_700_000_600_000));
}
