//! A bound on bracket nesting in text from outside (YAML files), checked before
//! a parser sees it. `serde_yaml` refuses documents nested deeper than 128
//! levels, but only after libyaml has scanned them, and that scan is quadratic
//! in the nesting of flow collections: 100,000 `[` took 42 s in a debug build.
//! Counting brackets without understanding quotes is deliberately
//! conservative: a string holding hundreds of unbalanced `[` is no config.

/// Text nested deeper than the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("brackets nested more than {limit} levels deep at line {line}")]
pub struct NestingError {
    pub limit: usize,
    pub line: usize,
}

/// The nesting Strata accepts in the YAML it reads: far above any config,
/// runtime-overrides or rule file (PromQL in a rule is itself limited to a few
/// hundred levels), far below what makes the YAML scanner slow.
pub const MAX_YAML_NESTING: usize = 1000;

/// Fails when `[`/`{` open more than `limit` levels at once anywhere in `text`.
pub fn check_bracket_nesting(text: &str, limit: usize) -> Result<(), NestingError> {
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(NestingError { limit, line });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_brackets() {
        assert!(check_bracket_nesting("a: [[{b: 1}]]\nc: [1]", 3).is_ok());
        assert_eq!(
            check_bracket_nesting("a: 1\nb: [[{c: 1}]]", 2),
            Err(NestingError { limit: 2, line: 2 })
        );
        // Closed brackets do not add up.
        let flat = "[1]".repeat(10_000);
        assert!(check_bracket_nesting(&flat, 1).is_ok());
        assert!(check_bracket_nesting(&"[".repeat(1001), MAX_YAML_NESTING).is_err());
    }
}
