//! Byte-level primitives of the block formats: Go-compatible varints, big-endian
//! integers and a bounds-checked decoder that never panics.

/// Appends `v` as a Go `binary.PutUvarint` (7 bits a byte, low bits first).
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` as a Go `binary.PutVarint` (zig-zag, then uvarint).
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Number of bytes [`put_uvarint`] writes for `v`.
pub(crate) fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_be32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_be64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends a string as its uvarint byte length followed by its bytes.
pub(crate) fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Why a [`Decoder`] stopped, and where (relative to the start of its buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) pos: usize,
    pub(crate) what: &'static str,
}

/// Reads primitives from a byte slice; every read is bounds-checked and fails
/// with a [`DecodeError`] instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            pos: self.pos,
            what,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err("unexpected end of data"));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A Go `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("unexpected end of data in varint"));
            };
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint overflows 64 bits"))
    }

    /// A Go `binary.Varint` (zig-zag).
    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A uvarint that must fit 32 bits.
    pub(crate) fn uvarint32(&mut self) -> Result<u32, DecodeError> {
        let start = self.pos;
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| DecodeError {
            pos: start,
            what: "varint overflows 32 bits",
        })
    }

    /// A uvarint length followed by that many bytes of UTF-8.
    pub(crate) fn uvarint_str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.uvarint()?;
        let len = usize::try_from(len).map_err(|_| self.err("string length overflows"))?;
        let start = self.pos;
        let b = self.bytes(len)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            pos: start,
            what: "string is not valid UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_go_encodings() {
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        b.clear();
        put_varint(&mut b, -1);
        assert_eq!(b, [0x01]);
        b.clear();
        put_varint(&mut b, 1);
        assert_eq!(b, [0x02]);
        b.clear();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), 10);
        assert_eq!(b[9], 1);
        // An 11-byte or too-large 10-byte varint is an error.
        let bad = [0xff; 10];
        assert!(Decoder::new(&bad).uvarint().is_err());
        assert!(Decoder::new(&[0x80]).uvarint().is_err());
        assert!(Decoder::new(&[]).be32().is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            prop_assert_eq!(b.len(), uvarint_len(u));
            put_varint(&mut b, i);
            let mut d = Decoder::new(&b);
            prop_assert_eq!(d.uvarint().unwrap(), u);
            prop_assert_eq!(d.varint().unwrap(), i);
            prop_assert_eq!(d.remaining(), 0);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decoder::new(&data);
            while d.remaining() > 0 {
                if d.uvarint_str().is_err() && d.varint().is_err() && d.be32().is_err() && d.u8().is_err() {
                    break;
                }
            }
        }
    }
}
