//! Stored secrets, in one of two forms:
//!
//! - bcrypt, `$2a$`, `$2b$` or `$2y$` then a two-digit cost and 53 characters
//!   of salt and digest, as `htpasswd -B` (Debian's `apache2-utils`) and the
//!   Prometheus ecosystem's `web.config.file` make them. Slow by design (about
//!   2^cost Blowfish key setups), which is what a password people choose
//!   needs if the tenants file leaks. Only for basic-auth passwords: the
//!   authenticator keeps successful checks in memory so a sender pushing
//!   every second pays the cost once (see `authenticator`).
//! - salted SHA-256, `sha256$<salt>$<hex digest>`, the digest being SHA-256 of
//!   the salt's bytes followed by the secret's bytes. Fast: right for long
//!   random tokens (bearer tokens, which are compared against every bearer
//!   credential of the file), weak for chosen passwords. An operator can make
//!   one with coreutils alone (see `docs/authentication.md`; a test runs that
//!   one-liner).
//!
//! Both compare in constant time: the digests with a fold over every byte,
//! bcrypt's with the `subtle` comparison the `bcrypt` crate uses.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The scheme name of the salted SHA-256 form.
pub const HASH_SCHEME: &str = "sha256";

/// Shortest salt accepted: 8 characters, so identical secrets never share a hash
/// and precomputed tables are useless.
pub const MIN_SALT_LEN: usize = 8;

/// Bcrypt costs accepted: 4 (the algorithm's least) to 17 (`htpasswd -C`'s
/// most; each step doubles the time, and 17 already takes seconds).
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=17;

/// Bcrypt reads at most this many bytes of a password (the rest is ignored,
/// by every implementation).
pub(crate) const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

const MAX_SALT_LEN: usize = 128;
const DIGEST_LEN: usize = 32;
/// `$2b$10$` and 22 + 31 characters of bcrypt's base64.
const BCRYPT_LEN: usize = 60;

/// Why a stored hash is unusable. Never contains the hash text itself: an
/// operator may have pasted a plaintext secret where a hash belongs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashFormatError(String);

/// A parsed stored hash (bcrypt or salted SHA-256). Its `Debug` shows nothing
/// of the salt or digest; `Display` writes the stored form (a hash, not a
/// secret, but still not something to log).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(Form);

#[derive(Clone, PartialEq, Eq)]
enum Form {
    Sha256 {
        salt: String,
        digest: [u8; DIGEST_LEN],
    },
    /// The stored text, checked to be well formed, and its cost.
    Bcrypt { stored: String, cost: u32 },
}

impl SecretHash {
    /// Parses the stored form: bcrypt when it starts with `$`, else
    /// `sha256$<salt>$<hex>`.
    pub fn parse(text: &str) -> Result<SecretHash, HashFormatError> {
        let text = text.trim();
        if text.starts_with('$') {
            return parse_bcrypt(text);
        }
        let expected = format!(
            "expected a bcrypt hash ($2y$..., as htpasswd -B makes) or {HASH_SCHEME}$<salt>$<64 hex digits>"
        );
        let parts: Vec<&str> = text.split('$').collect();
        let [scheme, salt, hex] = parts.as_slice() else {
            if text.contains(":$2") {
                return Err(HashFormatError(
                    "this looks like a whole htpasswd line: paste only the hash, after `user:`"
                        .to_string(),
                ));
            }
            return Err(HashFormatError(format!(
                "{expected}, got a value with {} `$`-separated part(s)",
                parts.len()
            )));
        };
        if *scheme != HASH_SCHEME {
            return Err(HashFormatError(format!("unknown hash scheme; {expected}")));
        }
        check_salt(salt)?;
        let digest = decode_hex(hex).ok_or_else(|| {
            HashFormatError(format!(
                "the digest is not 64 hex digits (it has {} characters); {expected}",
                hex.len()
            ))
        })?;
        Ok(SecretHash(Form::Sha256 {
            salt: salt.to_string(),
            digest,
        }))
    }

    /// A salted SHA-256 hash of `secret` (for tests and tools; operators use
    /// the shell one-liner).
    pub fn new(salt: &str, secret: &[u8]) -> Result<SecretHash, HashFormatError> {
        check_salt(salt)?;
        Ok(SecretHash(Form::Sha256 {
            salt: salt.to_string(),
            digest: digest(salt, secret),
        }))
    }

    /// A bcrypt hash of `secret` at `cost` with a fixed `salt` (for tests;
    /// operators use `htpasswd -B`).
    pub fn bcrypt(cost: u32, salt: [u8; 16], secret: &[u8]) -> Result<SecretHash, HashFormatError> {
        let parts = bcrypt::hash_with_salt(secret, cost, salt)
            .map_err(|_| HashFormatError(format!("bcrypt cost {cost} is not allowed")))?;
        parse_bcrypt(&parts.format_for_version(bcrypt::Version::TwoB))
    }

    /// Whether `secret` matches. Constant time in where the digests differ.
    /// Slow for bcrypt (tens of milliseconds at cost 10): callers on an async
    /// executor run it on a blocking thread.
    pub fn verify(&self, secret: &[u8]) -> bool {
        match &self.0 {
            Form::Sha256 { salt, digest: want } => constant_time_eq(&digest(salt, secret), want),
            // The text was checked at parse time; an error here is not a match.
            Form::Bcrypt { stored, .. } => bcrypt::verify(secret, stored).unwrap_or(false),
        }
    }

    /// Whether checking a secret is slow (bcrypt).
    pub fn is_slow(&self) -> bool {
        matches!(self.0, Form::Bcrypt { .. })
    }

    /// The bcrypt cost, for a bcrypt hash.
    pub fn bcrypt_cost(&self) -> Option<u32> {
        match self.0 {
            Form::Bcrypt { cost, .. } => Some(cost),
            Form::Sha256 { .. } => None,
        }
    }
}

/// Checks the shape of a bcrypt hash: version, cost, and 53 characters of
/// bcrypt's base64 that decode to a 16-byte salt and a 23-byte digest.
fn parse_bcrypt(text: &str) -> Result<SecretHash, HashFormatError> {
    let err = |why: &str| {
        HashFormatError(format!(
            "{why}; expected a bcrypt hash as htpasswd -B makes it: $2y$, a two-digit cost, $, then 53 characters"
        ))
    };
    if text.starts_with("$apr1$") || text.starts_with("$1$") {
        return Err(err(
            "an MD5 hash (what htpasswd makes without -B) is not accepted",
        ));
    }
    let bytes = text.as_bytes();
    if !text.starts_with("$2") {
        return Err(err("unknown hash scheme"));
    }
    if bytes.len() != BCRYPT_LEN {
        return Err(err(&format!(
            "it has {} bytes, not {BCRYPT_LEN}",
            text.len()
        )));
    }
    if !matches!(&bytes[..4], b"$2a$" | b"$2b$" | b"$2y$") {
        return Err(err("the bcrypt version must be 2a, 2b or 2y"));
    }
    let cost = std::str::from_utf8(&bytes[4..6])
        .ok()
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|_| bytes[6] == b'$')
        .ok_or_else(|| err("the cost is not two digits followed by $"))?;
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(err(&format!(
            "the cost is {cost}, outside {} to {}",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        )));
    }
    let rest = &bytes[7..];
    let alphabet_ok = rest
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'));
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        base64::engine::general_purpose::NO_PAD,
    );
    let mut salt = [0u8; 16];
    let mut digest = [0u8; 23];
    let decodes = alphabet_ok
        && engine.decode_slice(&rest[..22], &mut salt).is_ok()
        && engine.decode_slice(&rest[22..], &mut digest).is_ok();
    if !decodes {
        return Err(err(
            "the salt and digest are not bcrypt's base64 (./A-Za-z0-9)",
        ));
    }
    Ok(SecretHash(Form::Bcrypt {
        stored: text.to_string(),
        cost,
    }))
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Form::Sha256 { .. } => f.write_str("SecretHash(sha256, <redacted>)"),
            Form::Bcrypt { cost, .. } => write!(f, "SecretHash(bcrypt cost {cost}, <redacted>)"),
        }
    }
}

impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Form::Sha256 { salt, digest } => {
                write!(f, "{HASH_SCHEME}${salt}$")?;
                for b in digest {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Form::Bcrypt { stored, .. } => f.write_str(stored),
        }
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
pub(crate) fn constant_time_eq(a: &[u8; DIGEST_LEN], b: &[u8; DIGEST_LEN]) -> bool {
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

    /// Made with Debian's `htpasswd -nbB -C 4 team-a pw-bcrypt` (apache2-utils).
    const HTPASSWD_2Y: &str = "$2y$04$qMkFA1NEQNlyV1gyEHR93ufFAp8lukFWtq.s5R8aA/uRP3X9t9RLO";

    #[test]
    fn bcrypt_from_htpasswd_verifies() {
        let h = SecretHash::parse(HTPASSWD_2Y).unwrap();
        assert!(h.is_slow());
        assert_eq!(h.bcrypt_cost(), Some(4));
        assert!(h.verify(b"pw-bcrypt"));
        assert!(!h.verify(b"pw-bcrypT"));
        assert!(!h.verify(b""));
        assert_eq!(h.to_string(), HTPASSWD_2Y);
        // The same hash under the other version prefixes (2a, 2b and 2y
        // differ only in how old C libraries handled non-ASCII bytes).
        for version in ["$2a$", "$2b$"] {
            let other = HTPASSWD_2Y.replacen("$2y$", version, 1);
            assert!(
                SecretHash::parse(&other).unwrap().verify(b"pw-bcrypt"),
                "{version}"
            );
        }
        let made = SecretHash::bcrypt(4, [7; 16], b"secret").unwrap();
        assert!(SecretHash::parse(&made.to_string())
            .unwrap()
            .verify(b"secret"));
        assert!(!SecretHash::new("saltsalt", b"x").unwrap().is_slow());
    }

    #[test]
    fn bad_bcrypt_hashes_say_why_without_echoing_the_value() {
        let body = &HTPASSWD_2Y[7..];
        let cases = [
            (format!("$2x$04${body}"), "version must be 2a, 2b or 2y"),
            (format!("$2y$4$${body}"), "cost is not two digits"),
            (format!("$2y$xx${body}"), "cost is not two digits"),
            (format!("$2y$03${body}"), "the cost is 3, outside 4 to 17"),
            (format!("$2y$31${body}"), "the cost is 31, outside 4 to 17"),
            (format!("$2y$04${}", &body[1..]), "59 bytes, not 60"),
            (format!("$2y$04${body}x"), "61 bytes, not 60"),
            (format!("$2y$04${}!", &body[1..]), "not bcrypt's base64"),
            (format!("$2y$04${}é", &body[2..]), "not bcrypt's base64"),
            ("$apr1$mo8I4oXC$NiOOphEmkMV46K/DlZdVd1".to_string(), "MD5"),
            ("$argon2id$v=19$m=65536".to_string(), "unknown hash scheme"),
            (format!("team-a:{HTPASSWD_2Y}"), "whole htpasswd line"),
        ];
        for (text, want) in cases {
            let err = SecretHash::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            // Nothing of the hash's salt or digest is quoted.
            assert!(!err.contains(&body[..10]), "{err}");
            assert!(!err.contains(&body[40..]), "{err}");
            assert!(!err.contains("mo8I4oXC"), "{err}");
        }
    }

    #[test]
    fn bcrypt_reads_72_bytes() {
        let long = vec![b'x'; 72];
        let h = SecretHash::bcrypt(4, [1; 16], &long).unwrap();
        let mut longer = long.clone();
        longer.extend_from_slice(b"ignored");
        assert!(h.verify(&longer));
        assert!(!h.verify(&long[..71]));
    }

    #[test]
    fn debug_is_redacted() {
        let h = SecretHash::new("saltsalt", b"pw").unwrap();
        let dbg = format!("{h:?}");
        assert!(!dbg.contains("saltsalt"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
        let b = SecretHash::parse(HTPASSWD_2Y).unwrap();
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("qMkFA1"), "{dbg}");
        assert!(dbg.contains("bcrypt cost 4"), "{dbg}");
    }
}
