use std::fmt;

use regex::Regex;
use strata_status::{Coded, ErrorCode};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatcherError {
    #[error("invalid regular expression {value:?} for label {name:?}: {reason}")]
    BadRegex {
        name: String,
        value: String,
        reason: String,
    },
}

/// A matcher comes from a query or a selector the client wrote: a bad one
/// is the client's to fix.
impl Coded for MatcherError {
    fn code(&self) -> ErrorCode {
        match self {
            MatcherError::BadRegex { .. } => ErrorCode::BadRequest,
        }
    }
}

/// A label matcher with Prometheus semantics: regexes are fully anchored and `.`
/// matches newlines; a series without the label is matched as if its value were "".
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                Some(Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                    MatcherError::BadRegex {
                        name: name.clone(),
                        value: value.clone(),
                        reason: e.to_string(),
                    }
                })?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name,
            op,
            value,
            regex,
        })
    }

    /// A `name="value"` matcher; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a label value (`""` for an absent label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::RegexMatch, Some(re)) => re.is_match(value),
            (MatchOp::RegexNoMatch, Some(re)) => !re.is_match(value),
            // Regex ops are only constructed with a compiled regex.
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }

    /// Whether the matcher accepts the empty string, i.e. also selects series that
    /// lack the label entirely.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~` matchers that are a plain alternation of literals (`a|b|c`), the
    /// literals; lets indexes look values up instead of scanning them.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.op != MatchOp::RegexMatch {
            return None;
        }
        let parts: Vec<&str> = self.value.split('|').collect();
        if parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | ' ' | ',')
                })
        }) {
            Some(parts.into_iter().map(str::to_string).collect())
        } else {
            None
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_regex_is_a_bad_request() {
        let err = Matcher::new(MatchOp::RegexMatch, "job", "(").unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let e = strata_status::ServiceError::from_coded(&err);
        assert!(e.message.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        let m = Matcher::new(MatchOp::RegexMatch, "a", "fo+").unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("foox"));
        let m = Matcher::new(MatchOp::RegexMatch, "a", "a.b").unwrap();
        assert!(m.matches("a\nb"));
    }

    #[test]
    fn empty_value_rules() {
        assert!(Matcher::new(MatchOp::RegexMatch, "a", ".*")
            .unwrap()
            .matches_empty());
        assert!(!Matcher::new(MatchOp::RegexMatch, "a", ".+")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new(MatchOp::NotEqual, "a", "x")
            .unwrap()
            .matches_empty());
        assert!(Matcher::equal("a", "").matches_empty());
    }

    #[test]
    fn bad_regex_names_the_label() {
        let err = Matcher::new(MatchOp::RegexMatch, "pod", "(").unwrap_err();
        assert!(err.to_string().contains("pod"));
    }

    #[test]
    fn set_matches_only_for_literal_alternations() {
        let m = Matcher::new(MatchOp::RegexMatch, "a", "x|y").unwrap();
        assert_eq!(
            m.set_matches(),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        assert_eq!(
            Matcher::new(MatchOp::RegexMatch, "a", "x.*")
                .unwrap()
                .set_matches(),
            None
        );
    }
}
