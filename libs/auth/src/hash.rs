//! Stored secrets: salted SHA-256, written `sha256$<salt>$<hex digest>` where
//! the digest is SHA-256 of the salt's bytes followed by the secret's bytes.
//!
//! The format is chosen so an operator can make a hash with coreutils alone (see
//! `docs/authentication.md`; a test runs that one-liner). Salted SHA-256 is fast,
//! which is fine for random API tokens but weak for human passwords if the
//! tenants file leaks: use long random passwords (they are machine credentials
//! for Prometheus and Grafana, not people's). A slow scheme (argon2) can be
//! added as another `<scheme>` without changing the file format.

use std::fmt;

use sha2::{Digest, Sha256};

/// The only scheme understood today.
pub const HASH_SCHEME: &str = "sha256";

/// Shortest salt accepted: 8 characters, so identical secrets never share a hash
/// and precomputed tables are useless.
pub const MIN_SALT_LEN: usize = 8;

const MAX_SALT_LEN: usize = 128;
const DIGEST_LEN: usize = 32;

/// Why a stored hash is unusable. Never contains the hash text itself: an
/// operator may have pasted a plaintext secret where a hash belongs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashFormatError(String);

/// A parsed `sha256$<salt>$<hex>` hash. Its `Debug` shows nothing of the salt or
/// digest; `Display` writes the stored form (a hash, not a secret, but still
/// not something to log).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    salt: String,
    digest: [u8; DIGEST_LEN],
}

impl SecretHash {
    /// Parses the stored form.
    pub fn parse(text: &str) -> Result<SecretHash, HashFormatError> {
        let expected = format!("expected {HASH_SCHEME}$<salt>$<64 hex digits>");
        let parts: Vec<&str> = text.trim().split('$').collect();
        let [scheme, salt, hex] = parts.as_slice() else {
            return Err(HashFormatError(format!(
                "{expected}, got a value with {} `$`-separated part(s)",
                parts.len()
            )));
        };
        if *scheme != HASH_SCHEME {
            return Err(HashFormatError(format!(
                "unknown hash scheme (only {HASH_SCHEME} is supported); {expected}"
            )));
        }
        check_salt(salt)?;
        let digest = decode_hex(hex).ok_or_else(|| {
            HashFormatError(format!(
                "the digest is not 64 hex digits (it has {} characters); {expected}",
                hex.len()
            ))
        })?;
        Ok(SecretHash {
            salt: salt.to_string(),
            digest,
        })
    }

    /// Hashes `secret` with `salt` (for tests and tools; operators use the
    /// shell one-liner).
    pub fn new(salt: &str, secret: &[u8]) -> Result<SecretHash, HashFormatError> {
        check_salt(salt)?;
        Ok(SecretHash {
            salt: salt.to_string(),
            digest: digest(salt, secret),
        })
    }

    /// Whether `secret` hashes to this digest. The comparison takes the same
    /// time wherever the digests differ.
    pub fn verify(&self, secret: &[u8]) -> bool {
        constant_time_eq(&digest(&self.salt, secret), &self.digest)
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HASH_SCHEME}${}$", self.salt)?;
        for b in self.digest {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn check_salt(salt: &str) -> Result<(), HashFormatError> {
    if salt.len() < MIN_SALT_LEN || salt.len() > MAX_SALT_LEN {
        return Err(HashFormatError(format!(
            "the salt must be {MIN_SALT_LEN} to {MAX_SALT_LEN} characters long (it has {})",
            salt.len()
        )));
    }
    if !salt
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'+' | b'=' | b'_' | b'-'))
    {
        return Err(HashFormatError(
            "the salt may contain only letters, digits and . / + = _ -".to_string(),
        ));
    }
    Ok(())
}

fn digest(salt: &str, secret: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(secret);
    hasher.finalize().into()
}

fn decode_hex(hex: &str) -> Option<[u8; DIGEST_LEN]> {
    let bytes = hex.as_bytes();
    if bytes.len() != DIGEST_LEN * 2 {
        return None;
    }
    let mut out = [0u8; DIGEST_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Compares two digests without an early exit on the first difference.
fn constant_time_eq(a: &[u8; DIGEST_LEN], b: &[u8; DIGEST_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_verifies() {
        let h = SecretHash::new("saltsalt", b"hunter2").unwrap();
        assert!(h.verify(b"hunter2"));
        assert!(!h.verify(b"hunter3"));
        assert!(!h.verify(b""));
        let parsed = SecretHash::parse(&h.to_string()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify(b"hunter2"));
    }

    #[test]
    fn known_vector() {
        // printf '%s%s' 'abcdefgh' 'secret' | sha256sum
        let h = SecretHash::parse(
            "sha256$abcdefgh$45ef9ff2d26267cb28ef75cf759ea3417dba16998a34225da2b8393a3cc3e1e7",
        )
        .unwrap();
        assert!(h.verify(b"secret"));
        assert_eq!(h, SecretHash::new("abcdefgh", b"secret").unwrap());
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let h = SecretHash::new("saltsalt", b"pw").unwrap();
        let upper = h.to_string().replace("saltsalt", "SALTSALT");
        // Changing the salt changes the hash: it must not verify.
        assert!(!SecretHash::parse(&upper).unwrap().verify(b"pw"));
        let text = h.to_string();
        let (prefix, hex) = text.split_at(text.len() - 64);
        let upper_hex = format!("{prefix}{}", hex.to_uppercase());
        assert!(SecretHash::parse(&upper_hex).unwrap().verify(b"pw"));
    }

    #[test]
    fn bad_formats_say_why_without_echoing_the_value() {
        let secret = "my-plaintext-password";
        let cases = [
            (secret.to_string(), "part"),
            (format!("md5$saltsalt${secret}"), "unknown hash scheme"),
            (format!("sha256$short${}", "a".repeat(64)), "salt"),
            (format!("sha256$bad salt!${}", "a".repeat(64)), "salt"),
            (format!("sha256$saltsalt${secret}"), "64 hex digits"),
            (
                format!("sha256$saltsalt${}", "g".repeat(64)),
                "64 hex digits",
            ),
        ];
        for (text, want) in cases {
            let err = SecretHash::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains(secret), "{err}");
        }
    }

    /// The lines `docs/authentication.md` tells operators to run.
    fn documented_one_liner() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/authentication.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find("<!-- hash-one-liner -->").unwrap();
        let end = doc.find("<!-- /hash-one-liner -->").unwrap();
        doc[start..end]
            .lines()
            .filter(|l| !l.starts_with("<!--") && !l.starts_with("```"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_shell_one_liner_makes_hashes_that_verify() {
        let script = documented_one_liner();
        assert!(script.contains("sha256sum"), "{script}");
        for pw in ["token-abc123", "p@ss w%rd$x'\"\\n", "ünïcode"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("PW", pw)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let hash = SecretHash::parse(text.trim()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(hash.verify(pw.as_bytes()), "{pw}: {text}");
            assert!(!hash.verify(b"something else"));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let h = SecretHash::new("saltsalt", b"pw").unwrap();
        let dbg = format!("{h:?}");
        assert!(!dbg.contains("saltsalt"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }
}
