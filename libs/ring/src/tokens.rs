//! Random token generation and the on-disk tokens file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RingError;

/// Draws `n` distinct random tokens that are not in `taken` (the tokens of
/// the other instances), sorted ascending.
///
/// With 2³² possible tokens and rings of at most a few hundred thousand
/// tokens, a retry is rare; the loop cannot spin forever because `taken`
/// plus `n` always leaves room (`n` is bounded by the caller's config).
pub fn generate_tokens<R: rand::Rng + ?Sized>(
    n: usize,
    taken: &HashSet<u32>,
    rng: &mut R,
) -> Vec<u32> {
    let free = (1u64 << 32).saturating_sub(taken.len() as u64);
    let n = n.min(usize::try_from(free).unwrap_or(usize::MAX));
    let mut chosen = HashSet::with_capacity(n);
    while chosen.len() < n {
        let candidate = rng.next_u32();
        if !taken.contains(&candidate) {
            chosen.insert(candidate);
        }
    }
    let mut tokens: Vec<u32> = chosen.into_iter().collect();
    tokens.sort_unstable();
    tokens
}

/// Keeps the tokens of `existing` that no other instance owns (`taken`) and
/// tops them up with fresh ones to `n`; extra tokens beyond `n` are kept.
/// Returns them sorted.
pub fn complete_tokens<R: rand::Rng + ?Sized>(
    existing: &[u32],
    n: usize,
    taken: &HashSet<u32>,
    rng: &mut R,
) -> Vec<u32> {
    let mut tokens: Vec<u32> = existing
        .iter()
        .copied()
        .filter(|t| !taken.contains(t))
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    if tokens.len() < n {
        let mut avoid = taken.clone();
        avoid.extend(tokens.iter().copied());
        tokens.extend(generate_tokens(n - tokens.len(), &avoid, rng));
        tokens.sort_unstable();
    }
    tokens
}

/// The tokens file, in the same JSON shape Cortex and Mimir write
/// (`{"tokens":[...]}`), so a restarted instance claims the same tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensFile {
    /// The instance's tokens.
    pub tokens: Vec<u32>,
}

impl TokensFile {
    /// Reads the file. A missing file is `Ok(None)`; an unreadable or
    /// malformed one is an error.
    pub async fn load(path: &Path) -> Result<Option<Vec<u32>>, RingError> {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RingError::TokensFileIo {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let file: TokensFile =
            serde_json::from_slice(&bytes).map_err(|source| RingError::TokensFileFormat {
                path: path.to_path_buf(),
                source,
            })?;
        let mut tokens = file.tokens;
        tokens.sort_unstable();
        tokens.dedup();
        Ok(Some(tokens))
    }

    /// Writes the file atomically (temporary file in the same directory, then rename).
    pub async fn store(path: &Path, tokens: &[u32]) -> Result<(), RingError> {
        let io_err = |source| RingError::TokensFileIo {
            path: path.to_path_buf(),
            source,
        };
        let body = serde_json::to_vec(&TokensFile {
            tokens: tokens.to_vec(),
        })
        .map_err(|source| RingError::TokensFileFormat {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tmp: PathBuf = path.to_path_buf();
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        tmp.set_file_name(name);
        tokio::fs::write(&tmp, &body).await.map_err(io_err)?;
        tokio::fs::rename(&tmp, path).await.map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_are_sorted_distinct_and_avoid_taken() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let first = generate_tokens(128, &HashSet::new(), &mut rng);
        assert_eq!(first.len(), 128);
        assert!(first.windows(2).all(|w| w[0] < w[1]));

        let taken: HashSet<u32> = first.iter().copied().collect();
        for _ in 0..50 {
            let next = generate_tokens(512, &taken, &mut rng);
            assert_eq!(next.len(), 512);
            assert!(next.windows(2).all(|w| w[0] < w[1]));
            assert!(next.iter().all(|t| !taken.contains(t)));
        }
    }

    /// A tiny token space forces collisions: the generator must still avoid them.
    #[test]
    fn collisions_are_retried() {
        struct SmallRng(u32);
        impl rand::TryRng for SmallRng {
            type Error = std::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                Ok((self.0 >> 16) % 16)
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                Ok(u64::from(self.try_next_u32()?))
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
                for b in dst {
                    *b = self.try_next_u32()? as u8;
                }
                Ok(())
            }
        }
        let taken: HashSet<u32> = (0..10).collect();
        let tokens = generate_tokens(6, &taken, &mut SmallRng(1));
        assert_eq!(tokens, vec![10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn complete_tokens_keeps_own_drops_conflicts_and_tops_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let taken: HashSet<u32> = [5, 7].into_iter().collect();
        let tokens = complete_tokens(&[1, 5, 3], 4, &taken, &mut rng);
        assert_eq!(tokens.len(), 4);
        assert!(tokens.contains(&1) && tokens.contains(&3));
        assert!(!tokens.contains(&5) && !tokens.contains(&7));
        assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test]
    async fn tokens_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        assert_eq!(TokensFile::load(&path).await.unwrap(), None);
        TokensFile::store(&path, &[3, 1, 2]).await.unwrap();
        assert_eq!(TokensFile::load(&path).await.unwrap(), Some(vec![1, 2, 3]));
        std::fs::write(&path, b"not json").unwrap();
        assert!(TokensFile::load(&path).await.is_err());
    }
}
