//! The frame every record is written in: `[u32 LE length][u32 LE CRC32C of the
//! length bytes and the payload][payload]`, and the bounds a reader checks.

/// `[u32 LE length][u32 LE CRC32C]` before every payload.
pub(super) const HEADER_LEN: usize = 8;

/// Largest payload a frame may announce; readers treat larger lengths as
/// corruption. A single series' labels must fit in it.
pub(super) const MAX_RECORD_LEN: usize = 32 << 20;

/// Appends `payload` framed: its length, the CRC32C of the length bytes and the
/// payload, then the payload.
pub(super) fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}
