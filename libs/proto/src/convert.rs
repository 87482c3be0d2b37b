use strata_model::{Label, Labels, MatchOp, Matcher, MatcherError};
use strata_status::{Coded, ErrorCode};

use crate::prometheus;
use crate::types::{LabelMatcher, MatchType};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("unknown matcher type {0}")]
    UnknownMatchType(i32),
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// A matcher that does not convert came from the caller's request (a
/// querier asking an ingester or a store-gateway): bad input, with the
/// matcher's own reason when it is the regex.
impl Coded for ConvertError {
    fn code(&self) -> ErrorCode {
        match self {
            ConvertError::UnknownMatchType(_) => ErrorCode::BadRequest,
            ConvertError::Matcher(e) => e.code(),
        }
    }
}

/// Wire labels to a sorted label set. The distributor has validated order and
/// uniqueness before this is reached on the write path.
pub fn labels_from_proto(labels: Vec<prometheus::Label>) -> Labels {
    Labels::new(
        labels
            .into_iter()
            .map(|l| Label {
                name: l.name,
                value: l.value,
            })
            .collect(),
    )
}

pub fn labels_to_proto(labels: &Labels) -> Vec<prometheus::Label> {
    labels
        .iter()
        .map(|l| prometheus::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

pub fn matcher_to_proto(m: &Matcher) -> LabelMatcher {
    let r#type = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::RegexMatch => MatchType::RegexMatch,
        MatchOp::RegexNoMatch => MatchType::RegexNoMatch,
    };
    LabelMatcher {
        r#type: r#type as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

pub fn matcher_from_proto(m: &LabelMatcher) -> Result<Matcher, ConvertError> {
    let op = match MatchType::try_from(m.r#type) {
        Ok(MatchType::Equal) => MatchOp::Equal,
        Ok(MatchType::NotEqual) => MatchOp::NotEqual,
        Ok(MatchType::RegexMatch) => MatchOp::RegexMatch,
        Ok(MatchType::RegexNoMatch) => MatchOp::RegexNoMatch,
        Err(_) => return Err(ConvertError::UnknownMatchType(m.r#type)),
    };
    Ok(Matcher::new(op, m.name.clone(), m.value.clone())?)
}

pub fn matchers_from_proto(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, ConvertError> {
    ms.iter().map(matcher_from_proto).collect()
}

/// A remote-read matcher (Prometheus's `prometheus.LabelMatcher`, whose type
/// numbers are the same as ours but a wire type of its own).
pub fn remote_matcher_from_proto(m: &prometheus::LabelMatcher) -> Result<Matcher, ConvertError> {
    use prometheus::label_matcher::Type;
    let op = match Type::try_from(m.r#type) {
        Ok(Type::Eq) => MatchOp::Equal,
        Ok(Type::Neq) => MatchOp::NotEqual,
        Ok(Type::Re) => MatchOp::RegexMatch,
        Ok(Type::Nre) => MatchOp::RegexNoMatch,
        Err(_) => return Err(ConvertError::UnknownMatchType(m.r#type)),
    };
    Ok(Matcher::new(op, m.name.clone(), m.value.clone())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_that_do_not_convert_are_bad_requests() {
        let unknown = LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert_eq!(
            matcher_from_proto(&unknown).unwrap_err().code(),
            ErrorCode::BadRequest
        );
        let bad_regex = LabelMatcher {
            r#type: MatchType::RegexMatch as i32,
            name: "a".into(),
            value: "(".into(),
        };
        let err = matcher_from_proto(&bad_regex).unwrap_err();
        assert!(matches!(err, ConvertError::Matcher(_)), "{err}");
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }

    #[test]
    fn remote_read_matchers_convert_with_prometheus_type_numbers() {
        for (number, op) in [
            (0, MatchOp::Equal),
            (1, MatchOp::NotEqual),
            (2, MatchOp::RegexMatch),
            (3, MatchOp::RegexNoMatch),
        ] {
            let m = prometheus::LabelMatcher {
                r#type: number,
                name: "job".into(),
                value: "a.*".into(),
            };
            assert_eq!(remote_matcher_from_proto(&m).unwrap().op, op);
        }
        let unknown = prometheus::LabelMatcher {
            r#type: 4,
            name: "a".into(),
            value: "b".into(),
        };
        assert!(matches!(
            remote_matcher_from_proto(&unknown),
            Err(ConvertError::UnknownMatchType(4))
        ));
        let bad_regex = prometheus::LabelMatcher {
            r#type: 2,
            name: "a".into(),
            value: "(".into(),
        };
        assert!(matches!(
            remote_matcher_from_proto(&bad_regex),
            Err(ConvertError::Matcher(_))
        ));
    }

    #[test]
    fn matcher_round_trip() {
        for op in [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::RegexMatch,
            MatchOp::RegexNoMatch,
        ] {
            let m = Matcher::new(op, "job", "a.*").unwrap();
            assert_eq!(matcher_from_proto(&matcher_to_proto(&m)).unwrap(), m);
        }
        let bad = LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert!(matches!(
            matcher_from_proto(&bad),
            Err(ConvertError::UnknownMatchType(9))
        ));
    }
}
