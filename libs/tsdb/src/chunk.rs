//! Prometheus XOR ("Gorilla") chunks, bit-exact with `tsdb/chunkenc/xor.go`.
//!
//! A chunk's bytes are a 2-byte big-endian sample count followed by a bit stream
//! written most-significant bit first within each byte:
//!
//! * sample 0: timestamp as a zig-zag varint (Go `binary.PutVarint`), value as its
//!   raw 64 bits;
//! * sample 1: timestamp delta as an unsigned varint (Go `binary.PutUvarint`), value
//!   XOR-encoded against sample 0;
//! * later samples: the delta of the timestamp delta in one of five buckets (`0`,
//!   `10`+14 bits, `110`+17 bits, `1110`+20 bits, `1111`+64 bits, two's complement
//!   within the width), value XOR-encoded against the previous one: `0` if the bits
//!   are equal, `10` + the meaningful bits if they fit the previous leading/trailing
//!   zero window, else `11` + 5 bits leading zeros (clamped to 31) + 6 bits count of
//!   significant bits (64 written as 0) + the bits.
//!
//! Timestamp arithmetic wraps like Go's, so any sequence of timestamps round-trips;
//! values are kept as bit patterns, so NaNs (including the staleness marker), ±Inf
//! and -0.0 come back exactly.

use strata_model::Sample;
use thiserror::Error;

/// Prometheus's target number of samples per head chunk.
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Why a chunk could not be decoded. Decoding never panics: hostile or truncated
/// bytes end in one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("XOR chunk is {len} bytes long, shorter than its 2-byte header")]
    TooShort { len: usize },
    #[error("XOR chunk data ends before sample {index} of the {total} it declares")]
    Truncated { index: u16, total: u16 },
    #[error("XOR chunk sample {index}: timestamp varint overflows 64 bits")]
    VarintOverflow { index: u16 },
    #[error(
        "XOR chunk sample {index}: {leading} leading zeros plus {significant} significant bits exceed 64"
    )]
    BadValueWindow {
        index: u16,
        leading: u8,
        significant: u8,
    },
    #[error("XOR chunk already holds the maximum of 65535 samples")]
    Full,
}

/// The leading-zero marker of an encoder that has not yet written a non-zero XOR,
/// so it cannot reuse a previous window (Prometheus uses the same 0xff).
const NO_WINDOW: u8 = 0xff;

/// An XOR chunk being appended to. [`XorChunk::bytes`] is at every point a valid
/// chunk holding the samples appended so far.
#[derive(Debug, Clone)]
pub struct XorChunk {
    /// Header and bit stream; the last byte's low `free_bits` bits are unwritten.
    buf: Vec<u8>,
    free_bits: u8,
    count: u16,
    first_t: i64,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[0, 0]);
        Self {
            buf,
            free_bits: 0,
            count: 0,
            first_t: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends one sample. Timestamps are expected to increase (the head enforces
    /// it), but the encoding wraps like Prometheus's, so any order round-trips.
    /// Fails only when the chunk already holds `u16::MAX` samples.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let Some(next_count) = self.count.checked_add(1) else {
            return Err(ChunkError::Full);
        };
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.write_uvarint(zigzag(t));
                self.write_bits(bits, 64);
                self.first_t = t;
            }
            1 => {
                let delta = t.wrapping_sub(self.t) as u64;
                self.write_uvarint(delta);
                self.write_value(bits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t) as u64;
                let dod = delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.write_bits(0, 1);
                } else if fits_bits(dod, 14) {
                    self.write_bits(0b10, 2);
                    self.write_bits(dod as u64, 14);
                } else if fits_bits(dod, 17) {
                    self.write_bits(0b110, 3);
                    self.write_bits(dod as u64, 17);
                } else if fits_bits(dod, 20) {
                    self.write_bits(0b1110, 4);
                    self.write_bits(dod as u64, 20);
                } else {
                    self.write_bits(0b1111, 4);
                    self.write_bits(dod as u64, 64);
                }
                self.write_value(bits);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = bits;
        self.count = next_count;
        let [hi, lo] = next_count.to_be_bytes();
        self.buf[0] = hi;
        self.buf[1] = lo;
        Ok(())
    }

    pub fn num_samples(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exactly what Prometheus's `XORChunk.Bytes()` returns for the same samples.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes, giving up the encoder (no copy).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Timestamp of the first sample; `None` while empty.
    pub fn min_time(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_t)
    }

    /// Timestamp of the last sample; `None` while empty.
    pub fn max_time(&self) -> Option<i64> {
        (self.count > 0).then_some(self.t)
    }

    /// The last sample appended, value bit-exact; `None` while empty.
    pub fn last(&self) -> Option<Sample> {
        (self.count > 0).then(|| Sample::new(self.t, f64::from_bits(self.v)))
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.v;
        if xor == 0 {
            self.write_bits(0, 1);
            return;
        }
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            // `10`: reuse the previous window.
            self.write_bits(0b10, 2);
            let width = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.write_bits(xor >> self.trailing, width);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let significant = 64 - u32::from(leading) - u32::from(trailing);
            // `11`, then the new window; 64 significant bits are written as 0.
            self.write_bits(0b11, 2);
            self.write_bits(u64::from(leading), 5);
            self.write_bits(u64::from(significant), 6);
            self.write_bits(xor >> trailing, significant);
        }
    }

    fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x & 0x7f) | 0x80, 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    /// Writes the `nbits` (0..=64) low bits of `value`, most significant first.
    fn write_bits(&mut self, value: u64, nbits: u32) {
        let mut remaining = nbits;
        while remaining > 0 {
            if self.free_bits == 0 {
                self.buf.push(0);
                self.free_bits = 8;
            }
            let take = remaining.min(u32::from(self.free_bits));
            let part = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= part << (u32::from(self.free_bits) - take);
            }
            self.free_bits -= take as u8;
            remaining -= take;
        }
    }
}

fn zigzag(t: i64) -> u64 {
    ((t << 1) ^ (t >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Whether `x` is representable in the `nbits`-wide field, with Prometheus's
/// (asymmetric) rule: `-(2^(n-1) - 1) <= x <= 2^(n-1)`.
fn fits_bits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Reads bits most-significant first from a byte slice, with bounds checks.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Reads `nbits` (0..=64) bits as the low bits of the result; `None` past the end.
    fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        let nbits_usize = nbits as usize;
        if nbits > 64 || self.data.len() * 8 < self.pos + nbits_usize {
            return None;
        }
        if nbits == 0 {
            return Some(0);
        }
        let first = self.pos / 8;
        let offset = (self.pos % 8) as u32;
        // Up to 9 bytes (72 bits) cover offset (< 8) plus 64 bits.
        let mut acc: u128 = 0;
        for i in 0..9 {
            let byte = self.data.get(first + i).copied().unwrap_or(0);
            acc = (acc << 8) | u128::from(byte);
        }
        let shift = 72 - offset - nbits;
        let mask = if nbits == 64 {
            u64::MAX
        } else {
            (1u64 << nbits) - 1
        };
        self.pos += nbits_usize;
        Some((acc >> shift) as u64 & mask)
    }

    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    /// Go's `binary.ReadUvarint`: `Err(true)` on overflow, `Err(false)` on EOF.
    fn read_uvarint(&mut self) -> Result<u64, bool> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for i in 0..10 {
            let b = self.read_bits(8).ok_or(false)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(true);
                }
                return Ok(x | (b << shift));
            }
            x |= (b & 0x7f) << shift;
            shift += 7;
        }
        Err(true)
    }
}

/// Decodes an XOR chunk sample by sample.
///
/// It is an `Iterator<Item = Result<Sample, ChunkError>>`: it yields each sample in
/// order, then `None`; on corrupt data it yields one `Err` and then `None` forever
/// (fused). It never panics, whatever the bytes.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

impl<'a> XorIterator<'a> {
    /// Reads the header; fails only if `data` is shorter than 2 bytes.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let (header, stream) = match data {
            [hi, lo, rest @ ..] => (u16::from_be_bytes([*hi, *lo]), rest),
            _ => return Err(ChunkError::TooShort { len: data.len() }),
        };
        Ok(Self {
            reader: BitReader::new(stream),
            total: header,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        })
    }

    /// The sample count the header declares (not checked against the data).
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            index: self.read,
            total: self.total,
        }
    }

    fn decode_next(&mut self) -> Result<Sample, ChunkError> {
        let index = self.read;
        match index {
            0 => {
                let raw = self.reader.read_uvarint().map_err(|overflow| {
                    if overflow {
                        ChunkError::VarintOverflow { index }
                    } else {
                        self.truncated()
                    }
                })?;
                self.t = unzigzag(raw);
                self.v = self.reader.read_bits(64).ok_or_else(|| self.truncated())?;
            }
            1 => {
                let delta = self.reader.read_uvarint().map_err(|overflow| {
                    if overflow {
                        ChunkError::VarintOverflow { index }
                    } else {
                        self.truncated()
                    }
                })?;
                self.t_delta = delta;
                self.t = self.t.wrapping_add(delta as i64);
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
        }
        self.read += 1;
        Ok(Sample::new(self.t, f64::from_bits(self.v)))
    }

    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        // Up to four prefix bits: 0, 10, 110, 1110, 1111.
        let mut ones = 0;
        while ones < 4 {
            if !self.reader.read_bit().ok_or_else(|| self.truncated())? {
                break;
            }
            ones += 1;
        }
        let width = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => {
                let raw = self.reader.read_bits(64).ok_or_else(|| self.truncated())?;
                return Ok(raw as i64);
            }
        };
        let raw = self
            .reader
            .read_bits(width)
            .ok_or_else(|| self.truncated())? as i64;
        // Values above 2^(w-1) are negative numbers in two's complement.
        Ok(if raw > (1i64 << (width - 1)) {
            raw - (1i64 << width)
        } else {
            raw
        })
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        if !self.reader.read_bit().ok_or_else(|| self.truncated())? {
            return Ok(());
        }
        if self.reader.read_bit().ok_or_else(|| self.truncated())? {
            let leading = self.reader.read_bits(5).ok_or_else(|| self.truncated())? as u8;
            let mut significant = self.reader.read_bits(6).ok_or_else(|| self.truncated())? as u8;
            if significant == 0 {
                significant = 64;
            }
            if u32::from(leading) + u32::from(significant) > 64 {
                return Err(ChunkError::BadValueWindow {
                    index: self.read,
                    leading,
                    significant,
                });
            }
            self.leading = leading;
            self.trailing = 64 - leading - significant;
        }
        let width = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let bits = self
            .reader
            .read_bits(width)
            .ok_or_else(|| self.truncated())?;
        // `width` >= 1 here, so `trailing` <= 63 and the shift cannot overflow.
        self.v ^= bits << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<Sample, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let result = self.decode_next();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some(usize::from(self.total - self.read)))
        }
    }
}

impl std::iter::FusedIterator for XorIterator<'_> {}

/// Decodes a whole chunk.
pub fn decode_xor(data: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let it = XorIterator::new(data)?;
    // Do not trust the header for the allocation: a hostile count costs nothing.
    let mut out = Vec::with_capacity(usize::from(it.num_samples()).min(data.len() * 8));
    for sample in it {
        out.push(sample?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_model::STALE_NAN;

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v).unwrap();
        }
        c
    }

    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples
            .iter()
            .map(|s| (s.timestamp_ms, s.value.to_bits()))
            .collect()
    }

    #[test]
    fn empty_chunk_is_a_zero_header() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(decode_xor(c.bytes()).unwrap(), vec![]);
        assert_eq!(c.min_time(), None);
        assert_eq!(c.last(), None);
    }

    /// (1000, 1.0), (2000, 1.0), (3000, 2.0), (4000, 2.0), worked out by hand.
    #[test]
    fn hand_worked_example_constant_interval() {
        let c = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0), (4000, 2.0)]);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // Header: 4 samples, big-endian u16.
            0x00, 0x04,
            // Sample 0 timestamp 1000: zig-zag 2000 = 0b1111_1010000, as a uvarint
            // low 7 bits first with the continuation bit: 0x50|0x80, then 15.
            0xD0, 0x0F,
            // Sample 0 value 1.0 = 0x3FF0_0000_0000_0000, raw 64 bits.
            0x3F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            // Sample 1 delta 1000 as a uvarint: 0x68|0x80, then 7.
            0xE8, 0x07,
            // Bit stream from here on (MSB first):
            //   s1 value: XOR 0                        -> 0
            //   s2 dod 0                               -> 0
            //   s2 value: 1.0^2.0 = 0x7FF0_0000_0000_0000, leading 1, trailing 52,
            //     no window yet                        -> 11 00001 001011 11111111111
            //   s3 dod 0                               -> 0
            //   s3 value: XOR 0                        -> 0
            // 0011_0000 | 1001_0111 | 1111_1111 | 1100 (+ 4 padding zeros)
            0x30, 0x97, 0xFF, 0xC0,
        ];
        assert_eq!(c.bytes(), expected);
        assert_eq!(c.num_samples(), 4);
        assert_eq!((c.min_time(), c.max_time()), (Some(1000), Some(4000)));
        let decoded = decode_xor(expected).unwrap();
        assert_eq!(
            bits(&decoded),
            vec![
                (1000, 1f64.to_bits()),
                (2000, 1f64.to_bits()),
                (3000, 2f64.to_bits()),
                (4000, 2f64.to_bits())
            ]
        );
    }

    /// (10, 1.0), (20, 3.0), (31, 2.0), (40, 2.0): exercises the 14-bit dod bucket
    /// with a positive and a negative value and the `10` (window reuse) value path.
    #[test]
    fn hand_worked_example_dod_and_window_reuse() {
        let c = encode(&[(10, 1.0), (20, 3.0), (31, 2.0), (40, 2.0)]);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x00, 0x04,
            // Sample 0 timestamp 10: zig-zag 20 = 0x14, one varint byte.
            0x14,
            // Sample 0 value 1.0.
            0x3F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            // Sample 1 delta 10.
            0x0A,
            // Bit stream:
            //   s1 value: 1.0^3.0 = 0x7FF8_0000_0000_0000, leading 1, trailing 51,
            //     12 significant bits             -> 11 00001 001100 111111111111
            //   s2: delta 11, dod +1              -> 10 00000000000001
            //   s2 value: 3.0^2.0 = 0x0008_0000_0000_0000, leading 12 >= 1 and
            //     trailing 51 >= 51: reuse window -> 10 000000000001 (xor >> 51)
            //   s3: delta 9, dod -2 (2^14 - 2)    -> 10 11111111111110
            //   s3 value: XOR 0                   -> 0
            // 72 bits:
            // 1100_0010 0110_0111 1111_1111 1100_0000 0000_0000 1100_0000
            // 0000_0011 0111_1111 1111_1100
            0xC2, 0x67, 0xFF, 0xC0, 0x00, 0xC0, 0x03, 0x7F, 0xFC,
        ];
        assert_eq!(c.bytes(), expected);
        let decoded = decode_xor(expected).unwrap();
        assert_eq!(
            bits(&decoded),
            vec![
                (10, 1f64.to_bits()),
                (20, 3f64.to_bits()),
                (31, 2f64.to_bits()),
                (40, 2f64.to_bits())
            ]
        );
    }

    /// The asymmetric bucket bounds: +2^13 still fits 14 bits, -2^13 does not.
    #[test]
    fn hand_worked_example_bucket_bounds() {
        let c = encode(&[(0, 0.0), (1, 0.0), (8194, 0.0), (8195, 0.0)]);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x00, 0x04,
            // t0 = 0, value 0.0.
            0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            // delta 1.
            0x01,
            //   s1 value XOR 0                 -> 0
            //   s2 delta 8193, dod +8192       -> 10 10000000000000
            //   s2 value                       -> 0
            //   s3 delta 1, dod -8192 (17 bits: 2^17 - 8192 = 0b1_1110_0000_0000_0000)
            //                                  -> 110 11110000000000000
            //   s3 value                       -> 0
            // 0101_0000 0000_0000 0011_0111 1000_0000 0000_0000 (39 bits + pad)
            0x50, 0x00, 0x37, 0x80, 0x00,
        ];
        assert_eq!(c.bytes(), expected);
        let decoded = decode_xor(expected).unwrap();
        let ts: Vec<i64> = decoded.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(ts, vec![0, 1, 8194, 8195]);
    }

    #[test]
    fn negative_first_timestamp_is_zigzag() {
        let c = encode(&[(-1, 0.0)]);
        // zig-zag(-1) = 1.
        assert_eq!(&c.bytes()[..3], &[0x00, 0x01, 0x01]);
    }

    #[test]
    fn special_values_round_trip_bit_exactly() {
        let values = [
            f64::NAN,
            STALE_NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            STALE_NAN,
        ];
        let samples: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 15_000, *v))
            .collect();
        let c = encode(&samples);
        let decoded = decode_xor(c.bytes()).unwrap();
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(bits(&decoded), want);
    }

    #[test]
    fn truncation_and_bad_headers_are_errors() {
        assert_eq!(decode_xor(&[0x01]), Err(ChunkError::TooShort { len: 1 }));
        // Claims 5 samples, has none.
        assert_eq!(
            decode_xor(&[0x00, 0x05]),
            Err(ChunkError::Truncated { index: 0, total: 5 })
        );
        let c = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0), (4000, 2.0)]);
        let mut bytes = c.bytes().to_vec();
        bytes[1] = 200;
        assert!(matches!(
            decode_xor(&bytes),
            Err(ChunkError::Truncated { total: 200, .. })
        ));
        for len in 0..c.bytes().len() {
            assert!(decode_xor(&c.bytes()[..len]).is_err(), "len {len}");
        }
        // A varint of eleven continuation bytes overflows.
        let mut overflow = vec![0x00, 0x01];
        overflow.extend_from_slice(&[0xff; 11]);
        assert_eq!(
            decode_xor(&overflow),
            Err(ChunkError::VarintOverflow { index: 0 })
        );
    }

    #[test]
    fn iterator_is_fused_after_an_error() {
        let mut it = XorIterator::new(&[0x00, 0x02, 0x02]).unwrap();
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn full_chunk_rejects_appends() {
        let mut c = XorChunk::new();
        for t in 0..i64::from(u16::MAX) {
            c.append(t, 1.0).unwrap();
        }
        assert_eq!(c.append(1 << 20, 1.0), Err(ChunkError::Full));
        assert_eq!(decode_xor(c.bytes()).unwrap().len(), usize::from(u16::MAX));
    }

    fn value_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => any::<f64>(),
            2 => any::<u64>().prop_map(f64::from_bits),
            2 => (-1000i32..1000).prop_map(f64::from),
            1 => Just(f64::NAN),
            1 => Just(STALE_NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(-0.0),
            1 => Just(0.0),
            2 => Just(1.0),
        ]
    }

    fn delta_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => Just(15_000i64),
            4 => 14_000i64..16_000,
            2 => 1i64..100,
            2 => 1i64..(1 << 21),
            1 => 1i64..(1 << 40),
            1 => (1i64 << 40)..(1i64 << 55),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_increasing(
            start in prop_oneof![-(1i64 << 50)..(1i64 << 50), Just(0i64), Just(i64::MIN / 2)],
            steps in proptest::collection::vec((delta_strategy(), value_strategy()), 0..300),
        ) {
            let mut c = XorChunk::new();
            let mut want = Vec::new();
            let mut t = start;
            for (d, v) in steps {
                c.append(t, v).unwrap();
                want.push((t, v.to_bits()));
                t = t.wrapping_add(d);
            }
            let got = decode_xor(c.bytes()).unwrap();
            prop_assert_eq!(bits(&got), want.clone());
            prop_assert_eq!(usize::from(c.num_samples()), want.len());
            prop_assert_eq!(c.max_time(), want.last().map(|s| s.0));
            prop_assert_eq!(c.min_time(), want.first().map(|s| s.0));
        }

        #[test]
        fn round_trip_any_timestamps(
            steps in proptest::collection::vec((any::<i64>(), value_strategy()), 0..100),
        ) {
            let mut c = XorChunk::new();
            for &(t, v) in &steps {
                c.append(t, v).unwrap();
            }
            let got = decode_xor(c.bytes()).unwrap();
            let want: Vec<(i64, u64)> = steps.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(bits(&got), want);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_xor(&data);
            if let Ok(it) = XorIterator::new(&data) {
                prop_assert!(it.count() <= usize::from(u16::MAX));
            }
        }

        #[test]
        fn corrupted_chunks_never_panic(
            steps in proptest::collection::vec((1i64..100_000, value_strategy()), 1..150),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut c = XorChunk::new();
            let mut t = 0;
            for (d, v) in steps {
                t += d;
                c.append(t, v).unwrap();
            }
            let mut bytes = c.into_bytes();
            for (i, x) in flips {
                let n = bytes.len();
                bytes[i % n] ^= x;
            }
            let _ = decode_xor(&bytes);
            let n = bytes.len();
            let _ = decode_xor(&bytes[..cut % (n + 1)]);
        }
    }
}
