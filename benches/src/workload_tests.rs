//! Tests of the generator's series (kept out of workload.rs, which the
//! criterion benches include by path).

use crate::workload::{make_series, metric_names, series_labels, Rng};
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
fn generations_make_new_series() {
    let names = metric_names();
    assert_ne!(series_labels(&names, 5, 0), series_labels(&names, 5, 1));
    assert_eq!(series_labels(&names, 5, 1), series_labels(&names, 5, 1));
}
