//! The only place bytes become Kafka messages and back.
//!
//! No files.

pub mod error_codes;
pub mod spliced;
pub mod versions;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A decoded request.
#[derive(Debug)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request shorter than a request header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown API key {key}")]
    UnknownApiKey { key: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("{api_key:?} v{version} does not decode: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

impl FrameError {
    /// The correlation id to answer with, when the header got that far.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            FrameError::TooShort(_) => None,
            FrameError::UnknownApiKey { correlation_id, .. }
            | FrameError::UnsupportedVersion { correlation_id, .. }
            | FrameError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

fn peek_i16(frame: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Decodes one request frame (without its 4-byte length). The API key and version are read
/// first, because the header's own version depends on them and kafka-protocol's decoders
/// refuse versions outside their range.
pub fn decode_request(mut frame: Bytes) -> Result<RequestFrame, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let key = peek_i16(&frame, 0);
    let version = peek_i16(&frame, 2);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey {
        key,
        correlation_id,
    })?;
    if !versions::is_supported(api_key, version) {
        return Err(FrameError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| FrameError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    Ok(RequestFrame {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response with its 4-byte length prefix, header at the version the response
/// type dictates (always v0 for ApiVersions).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// A response whose body is only an error code: what a broker can say about a request it
/// cannot decode, since it cannot build that API's response at a version it does not know.
/// For ApiVersions this is exactly the v0 error response clients expect (KIP-511).
pub fn encode_error_only(correlation_id: i32, error_code: i16) -> Bytes {
    let mut buf = BytesMut::with_capacity(14);
    buf.put_i32(10);
    buf.put_i32(correlation_id);
    buf.put_i16(error_code);
    buf.put_i32(0); // empty api_keys array, as a v0 ApiVersions body
    buf.freeze()
}

/// Reads the 4-byte big-endian length prefix.
pub fn frame_length(prefix: [u8; 4]) -> i32 {
    (&prefix[..]).get_i32()
}
