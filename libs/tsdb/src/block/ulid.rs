//! ULIDs (<https://github.com/ulid/spec>), the IDs of blocks: 48 bits of
//! milliseconds since the Unix epoch, then 80 random bits, written as 26
//! characters of Crockford's base32. They sort by creation time.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A block ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(pub u128);

/// A string that is not a ULID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid ULID {input:?}: {reason}")]
pub struct UlidError {
    pub input: String,
    pub reason: &'static str,
}

impl Ulid {
    /// A new ULID for the current time with fresh random bits.
    pub fn generate() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self::from_parts(ms as u64, rand::random::<u128>())
    }

    /// A ULID from a millisecond timestamp (low 48 bits kept) and random bits
    /// (low 80 bits kept).
    pub fn from_parts(timestamp_ms: u64, random: u128) -> Self {
        let ts = u128::from(timestamp_ms & 0xffff_ffff_ffff);
        Self((ts << 80) | (random & ((1u128 << 80) - 1)))
    }

    /// Milliseconds since the Unix epoch at creation.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        // The alphabet is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Ulid {
    type Err = UlidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| UlidError {
            input: s.to_string(),
            reason,
        };
        if s.len() != 26 {
            return Err(err("not 26 characters long"));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let upper = b.to_ascii_uppercase();
            let Some(d) = ALPHABET.iter().position(|&a| a == upper) else {
                return Err(err("character outside Crockford's base32 alphabet"));
            };
            if i == 0 && d > 7 {
                return Err(err("first character above 7 overflows 128 bits"));
            }
            v = (v << 5) | d as u128;
        }
        Ok(Self(v))
    }
}

impl serde::Serialize for Ulid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ulid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_and_round_trip() {
        // The spec's example timestamp: 1469918176385 ms encodes as 01ARYZ6S41.
        let u = Ulid::from_parts(1_469_918_176_385, 0);
        assert_eq!(u.to_string(), "01ARYZ6S410000000000000000");
        assert_eq!(u.timestamp_ms(), 1_469_918_176_385);
        let g = Ulid::generate();
        assert_eq!(g.to_string().parse::<Ulid>().unwrap(), g);
        assert_eq!(
            "01arYZ6s410000000000000000".parse::<Ulid>().unwrap(),
            u,
            "case-insensitive"
        );
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<Ulid>().is_err());
        assert!("01ARYZ6S41000000000000000U".parse::<Ulid>().is_err());
        assert!("01ARYZ".parse::<Ulid>().is_err());
        assert!(Ulid::generate() != Ulid::generate());
    }
}
