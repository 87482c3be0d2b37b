//! Remote-write 1.0 bodies: snappy block format around a protobuf `WriteRequest`.

use prost::Message;
use strata_proto::prometheus::WriteRequest;
use strata_status::{Coded, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is not snappy-compressed (block format): {0}")]
    NotSnappy(#[source] snap::Error),
    #[error("the decompressed request would be {declared} bytes, more than the limit of {limit} bytes (distributor.max_recv_msg_size)")]
    TooLarge { declared: usize, limit: usize },
    #[error("the request body is not a remote-write protobuf WriteRequest: {0}")]
    NotProtobuf(#[source] prost::DecodeError),
}

impl Coded for DecodeError {
    /// A body that does not decode is the client's to fix (400): Prometheus
    /// drops such a batch rather than retrying it forever.
    fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Empty
            | DecodeError::NotSnappy(_)
            | DecodeError::TooLarge { .. }
            | DecodeError::NotProtobuf(_) => ErrorCode::BadRequest,
        }
    }
}

/// Decodes a remote-write body. The declared decompressed length is checked
/// against `max_decompressed` before anything is allocated for it, so a tiny
/// body claiming gigabytes costs nothing.
pub fn decode_write_request(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    // The block format starts with the decompressed length as a varint. Read
    // it here, so a header claiming more than the limit (or more than snappy
    // itself takes, 4 GiB and up) is refused naming the limit.
    if let Some(declared) = declared_length(body) {
        if declared > max_decompressed as u64 {
            return Err(DecodeError::TooLarge {
                declared: usize::try_from(declared).unwrap_or(usize::MAX),
                limit: max_decompressed,
            });
        }
    }
    let declared = snap::raw::decompress_len(body).map_err(DecodeError::NotSnappy)?;
    if declared > max_decompressed {
        return Err(DecodeError::TooLarge {
            declared,
            limit: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(DecodeError::NotSnappy)?;
    WriteRequest::decode(raw.as_slice()).map_err(DecodeError::NotProtobuf)
}

/// The decompressed length a snappy block declares (its leading unsigned
/// varint), if the header is a well-formed varint of at most 64 bits.
fn declared_length(body: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in body.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn huge_declared_lengths_name_the_limit() {
        // 4 GiB - 1, 4 GiB and 2^40, each a bare snappy header.
        for header in [
            vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            vec![0x80, 0x80, 0x80, 0x80, 0x10],
            vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
        ] {
            let err = decode_write_request(&header, 100 << 20).unwrap_err();
            assert!(
                matches!(err, DecodeError::TooLarge { limit, .. } if limit == 100 << 20),
                "{header:?}: {err}"
            );
            assert!(err.to_string().contains("distributor.max_recv_msg_size"));
        }
        assert_eq!(declared_length(&[0x05]), Some(5));
        assert_eq!(declared_length(&[0x80, 0x01]), Some(128));
        assert_eq!(declared_length(&[0xff; 11]), None);
    }
    use strata_proto::prometheus::{Label, Sample, TimeSeries};

    fn encode(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            decode_write_request(&encode(&request), 1 << 20).unwrap(),
            request
        );
    }

    #[test]
    fn classifies_bad_bodies() {
        assert_eq!(decode_write_request(b"", 100), Err(DecodeError::Empty));
        assert_eq!(DecodeError::Empty.code(), ErrorCode::BadRequest);
        let too_large = DecodeError::TooLarge {
            declared: 2,
            limit: 1,
        };
        assert_eq!(
            strata_status::ServiceError::from_coded(&too_large),
            strata_status::ServiceError::bad_request(too_large.to_string())
        );
        assert!(matches!(
            decode_write_request(&[0xff; 12], 1 << 20),
            Err(DecodeError::NotSnappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff hello")
            .unwrap();
        assert!(matches!(
            decode_write_request(&not_proto, 1 << 20),
            Err(DecodeError::NotProtobuf(_))
        ));
    }

    #[test]
    fn huge_declared_length_is_refused_before_allocation() {
        // A varint declaring 0xFFFFFFFF bytes, then garbage.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x01];
        match decode_write_request(&body, 100 << 20) {
            Err(DecodeError::TooLarge { declared, .. }) => assert_eq!(declared, 0xffff_ffff),
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_write_request(&body, 1 << 20);
        }

        #[test]
        fn random_protobuf_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let body = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
            let _ = decode_write_request(&body, 1 << 20);
        }
    }
}
