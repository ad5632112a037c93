//! AWS event-stream binary framing (`application/vnd.amazon.eventstream`),
//! as Bedrock's `ConverseStream` answers with.
//!
//! A frame is, big-endian:
//! `total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32`,
//! where `prelude_crc` is the CRC-32 (IEEE) of the first 8 bytes and
//! `message_crc` the CRC-32 of everything before it. Each header is
//! `name_len u8 | name | type u8 | value`.
//!
//! [`encode`] writes a frame; [`MessageDecoder`] decodes frames from bytes
//! that arrive in arbitrary pieces.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Prelude (8 bytes) plus its CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude, prelude CRC and message CRC.
const MIN_FRAME_LEN: usize = PRELUDE_LEN + 4;
/// The largest frame accepted (AWS limits messages to 16 MiB).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// The largest header section accepted (AWS limits it to 128 KiB).
pub const MAX_HEADERS_LEN: usize = 128 * 1024;

/// A typed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Int16(i16),
    /// Type 4.
    Int32(i32),
    /// Type 5.
    Int64(i64),
    /// Type 6: u16 length and bytes.
    ByteArray(Bytes),
    /// Type 7: u16 length and UTF-8.
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The string, when this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    fn type_byte(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Int16(_) => 3,
            HeaderValue::Int32(_) => 4,
            HeaderValue::Int64(_) => 5,
            HeaderValue::ByteArray(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }
}

/// One named header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name, at most 255 bytes.
    pub name: String,
    /// The value.
    pub value: HeaderValue,
}

impl Header {
    /// A string-valued header.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: HeaderValue::String(value.into()),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<Header>,
    /// The payload (JSON for Bedrock).
    pub payload: Bytes,
}

impl Message {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// The first header named `name`, when it is a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }
}

/// A frame that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// The prelude CRC does not match.
    #[error("event-stream prelude CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    PreludeCrc {
        /// CRC computed over the prelude.
        expected: u32,
        /// CRC found in the frame.
        actual: u32,
    },
    /// The message CRC does not match.
    #[error("event-stream message CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    MessageCrc {
        /// CRC computed over the frame.
        expected: u32,
        /// CRC found in the frame.
        actual: u32,
    },
    /// Lengths in the prelude are impossible or too large.
    #[error("event-stream frame has invalid lengths: {0}")]
    InvalidLength(&'static str),
    /// A header is malformed.
    #[error("event-stream header is malformed: {0}")]
    InvalidHeader(&'static str),
    /// The input ended inside a frame.
    #[error("event stream ended inside a frame")]
    Truncated,
}

/// Encodes `message` as one frame.
pub fn encode(message: &Message) -> Result<Vec<u8>, EventStreamError> {
    let mut headers = Vec::new();
    for header in &message.headers {
        write_header(header, &mut headers)?;
    }
    if headers.len() > MAX_HEADERS_LEN {
        return Err(EventStreamError::InvalidLength("headers too long"));
    }
    let total = MIN_FRAME_LEN + headers.len() + message.payload.len();
    if total > MAX_FRAME_LEN {
        return Err(EventStreamError::InvalidLength("frame too long"));
    }
    let total_u32 =
        u32::try_from(total).map_err(|_| EventStreamError::InvalidLength("frame too long"))?;
    let headers_u32 = u32::try_from(headers.len())
        .map_err(|_| EventStreamError::InvalidLength("headers too long"))?;
    let mut out = Vec::with_capacity(total);
    out.put_u32(total_u32);
    out.put_u32(headers_u32);
    let prelude_crc = crc32fast::hash(&out);
    out.put_u32(prelude_crc);
    out.extend_from_slice(&headers);
    out.extend_from_slice(&message.payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    Ok(out)
}

fn write_header(header: &Header, out: &mut Vec<u8>) -> Result<(), EventStreamError> {
    let name = header.name.as_bytes();
    let name_len =
        u8::try_from(name.len()).map_err(|_| EventStreamError::InvalidHeader("name too long"))?;
    if name.is_empty() {
        return Err(EventStreamError::InvalidHeader("empty name"));
    }
    out.put_u8(name_len);
    out.extend_from_slice(name);
    out.put_u8(header.value.type_byte());
    match &header.value {
        HeaderValue::Bool(_) => {}
        HeaderValue::Byte(v) => out.put_i8(*v),
        HeaderValue::Int16(v) => out.put_i16(*v),
        HeaderValue::Int32(v) => out.put_i32(*v),
        HeaderValue::Int64(v) | HeaderValue::Timestamp(v) => out.put_i64(*v),
        HeaderValue::ByteArray(v) => write_u16_prefixed(v, out)?,
        HeaderValue::String(v) => write_u16_prefixed(v.as_bytes(), out)?,
        HeaderValue::Uuid(v) => out.extend_from_slice(v),
    }
    Ok(())
}

fn write_u16_prefixed(data: &[u8], out: &mut Vec<u8>) -> Result<(), EventStreamError> {
    let len =
        u16::try_from(data.len()).map_err(|_| EventStreamError::InvalidHeader("value too long"))?;
    out.put_u16(len);
    out.extend_from_slice(data);
    Ok(())
}

/// Decodes frames from bytes fed in arbitrary pieces.
///
/// Feed bytes with [`push`](Self::push), then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. After an
/// error the stream is corrupt and the decoder should be dropped.
#[derive(Debug, Default)]
pub struct MessageDecoder {
    buffer: BytesMut,
}

impl MessageDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub fn has_partial_frame(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Reports [`EventStreamError::Truncated`] when the input ended inside a
    /// frame; call it at end of input.
    pub fn finish(&self) -> Result<(), EventStreamError> {
        if self.has_partial_frame() {
            Err(EventStreamError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The next complete frame, or `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, EventStreamError> {
        if self.buffer.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let prelude = &self.buffer[..PRELUDE_LEN];
        let total = read_u32(&prelude[0..4]);
        let headers_len = read_u32(&prelude[4..8]);
        let prelude_crc = read_u32(&prelude[8..12]);
        let expected = crc32fast::hash(&prelude[..8]);
        if expected != prelude_crc {
            return Err(EventStreamError::PreludeCrc {
                expected,
                actual: prelude_crc,
            });
        }
        let total = usize::try_from(total)
            .map_err(|_| EventStreamError::InvalidLength("frame too long"))?;
        let headers_len = usize::try_from(headers_len)
            .map_err(|_| EventStreamError::InvalidLength("headers too long"))?;
        if total > MAX_FRAME_LEN {
            return Err(EventStreamError::InvalidLength("frame too long"));
        }
        if headers_len > MAX_HEADERS_LEN {
            return Err(EventStreamError::InvalidLength("headers too long"));
        }
        if total < MIN_FRAME_LEN + headers_len {
            return Err(EventStreamError::InvalidLength(
                "total length smaller than headers",
            ));
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let frame = self.buffer.split_to(total).freeze();
        let body_end = total - 4;
        let message_crc = read_u32(&frame[body_end..]);
        let expected = crc32fast::hash(&frame[..body_end]);
        if expected != message_crc {
            return Err(EventStreamError::MessageCrc {
                expected,
                actual: message_crc,
            });
        }
        let headers_end = PRELUDE_LEN + headers_len;
        let headers = read_headers(&frame[PRELUDE_LEN..headers_end])?;
        let payload = frame.slice(headers_end..body_end);
        Ok(Some(Message { headers, payload }))
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut b = bytes;
    b.get_u32()
}

fn read_headers(mut buf: &[u8]) -> Result<Vec<Header>, EventStreamError> {
    let mut headers = Vec::new();
    while buf.has_remaining() {
        let name_len = usize::from(buf.get_u8());
        if name_len == 0 {
            return Err(EventStreamError::InvalidHeader("empty name"));
        }
        let name = take(&mut buf, name_len)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| EventStreamError::InvalidHeader("name is not UTF-8"))?
            .to_owned();
        if !buf.has_remaining() {
            return Err(EventStreamError::InvalidHeader("missing value type"));
        }
        let value = match buf.get_u8() {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed::<1>(&mut buf)?)),
            3 => HeaderValue::Int16(i16::from_be_bytes(fixed::<2>(&mut buf)?)),
            4 => HeaderValue::Int32(i32::from_be_bytes(fixed::<4>(&mut buf)?)),
            5 => HeaderValue::Int64(i64::from_be_bytes(fixed::<8>(&mut buf)?)),
            6 => {
                let len = usize::from(u16::from_be_bytes(fixed::<2>(&mut buf)?));
                HeaderValue::ByteArray(Bytes::copy_from_slice(take(&mut buf, len)?))
            }
            7 => {
                let len = usize::from(u16::from_be_bytes(fixed::<2>(&mut buf)?));
                let text = std::str::from_utf8(take(&mut buf, len)?)
                    .map_err(|_| EventStreamError::InvalidHeader("string is not UTF-8"))?;
                HeaderValue::String(text.to_owned())
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed::<8>(&mut buf)?)),
            9 => HeaderValue::Uuid(fixed::<16>(&mut buf)?),
            _ => return Err(EventStreamError::InvalidHeader("unknown value type")),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], EventStreamError> {
    if buf.len() < n {
        return Err(EventStreamError::InvalidHeader(
            "header overruns the section",
        ));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn fixed<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], EventStreamError> {
    let bytes = take(buf, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference test vector 3: a Bedrock `contentBlockDelta` frame.
    const VECTOR_HEX: &str = "0000009f00000057c37babff0b3a6576656e742d74797065070011636f6e74656e74426c6f636b44656c74610d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b22636f6e74656e74426c6f636b496e646578223a302c2264656c7461223a7b2274657874223a224869227d2c2270223a2261626364227df2ace5ff";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn vector_message() -> Message {
        Message {
            headers: vec![
                Header::string(":event-type", "contentBlockDelta"),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: Bytes::from_static(
                br#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}"#,
            ),
        }
    }

    #[test]
    fn encodes_the_reference_frame_byte_for_byte() {
        let bytes = encode(&vector_message()).unwrap();
        assert_eq!(bytes.len(), 159);
        assert_eq!(bytes, unhex(VECTOR_HEX));
    }

    #[test]
    fn decodes_the_reference_frame() {
        let mut decoder = MessageDecoder::new();
        decoder.push(&unhex(VECTOR_HEX));
        let message = decoder.next_message().unwrap().unwrap();
        assert_eq!(message, vector_message());
        assert_eq!(message.header_str(":event-type"), Some("contentBlockDelta"));
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn captured_prelude_crc_matches() {
        assert_eq!(
            crc32fast::hash(&[0x00, 0x00, 0x01, 0x0b, 0x00, 0x00, 0x00, 0x4b]),
            0x38a0_a5c5
        );
    }

    #[test]
    fn corrupted_crcs_are_reported() {
        let mut bytes = unhex(VECTOR_HEX);
        bytes[9] ^= 1;
        let mut decoder = MessageDecoder::new();
        decoder.push(&bytes);
        assert!(matches!(
            decoder.next_message(),
            Err(EventStreamError::PreludeCrc { .. })
        ));

        let mut bytes = unhex(VECTOR_HEX);
        bytes[100] ^= 1;
        let mut decoder = MessageDecoder::new();
        decoder.push(&bytes);
        assert!(matches!(
            decoder.next_message(),
            Err(EventStreamError::MessageCrc { .. })
        ));
    }

    #[test]
    fn a_frame_cut_short_is_incomplete_then_truncated() {
        let bytes = unhex(VECTOR_HEX);
        let mut decoder = MessageDecoder::new();
        decoder.push(&bytes[..100]);
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.finish(), Err(EventStreamError::Truncated));
    }

    #[test]
    fn every_header_type_round_trips() {
        let message = Message {
            headers: vec![
                Header {
                    name: "t".into(),
                    value: HeaderValue::Bool(true),
                },
                Header {
                    name: "f".into(),
                    value: HeaderValue::Bool(false),
                },
                Header {
                    name: "b".into(),
                    value: HeaderValue::Byte(-3),
                },
                Header {
                    name: "s".into(),
                    value: HeaderValue::Int16(-300),
                },
                Header {
                    name: "i".into(),
                    value: HeaderValue::Int32(70_000),
                },
                Header {
                    name: "l".into(),
                    value: HeaderValue::Int64(-1 << 40),
                },
                Header {
                    name: "bytes".into(),
                    value: HeaderValue::ByteArray(Bytes::from_static(&[0, 1, 255])),
                },
                Header::string("str", "héllo"),
                Header {
                    name: "ts".into(),
                    value: HeaderValue::Timestamp(1_700_000_000_123),
                },
                Header {
                    name: "id".into(),
                    value: HeaderValue::Uuid([7; 16]),
                },
            ],
            payload: Bytes::from_static(b"payload"),
        };
        let bytes = encode(&message).unwrap();
        let mut decoder = MessageDecoder::new();
        decoder.push(&bytes);
        assert_eq!(decoder.next_message().unwrap(), Some(message));
    }

    #[test]
    fn unknown_header_types_and_oversized_lengths_are_errors() {
        let mut bad = Vec::new();
        bad.extend_from_slice(&[1, b'x', 42]);
        assert!(read_headers(&bad).is_err());
        let mut frame = Vec::new();
        frame.put_u32(u32::MAX);
        frame.put_u32(0);
        let crc = crc32fast::hash(&frame);
        frame.put_u32(crc);
        let mut decoder = MessageDecoder::new();
        decoder.push(&frame);
        assert!(matches!(
            decoder.next_message(),
            Err(EventStreamError::InvalidLength(_))
        ));
    }

    fn header_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            any::<bool>().prop_map(HeaderValue::Bool),
            any::<i8>().prop_map(HeaderValue::Byte),
            any::<i16>().prop_map(HeaderValue::Int16),
            any::<i32>().prop_map(HeaderValue::Int32),
            any::<i64>().prop_map(HeaderValue::Int64),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|v| HeaderValue::ByteArray(Bytes::from(v))),
            ".{0,40}".prop_map(HeaderValue::String),
            any::<i64>().prop_map(HeaderValue::Timestamp),
            any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            proptest::collection::vec((":?[a-z-]{1,20}", header_value()), 0..6),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(headers, payload)| Message {
                headers: headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                payload: Bytes::from(payload),
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips_over_any_split(
            messages in proptest::collection::vec(message(), 1..4),
            chunk in 1usize..64,
        ) {
            let mut bytes = Vec::new();
            for m in &messages {
                bytes.extend(encode(m).unwrap());
            }
            let mut decoder = MessageDecoder::new();
            let mut decoded = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                while let Some(m) = decoder.next_message().unwrap() {
                    decoded.push(m);
                }
            }
            prop_assert_eq!(decoded, messages);
            prop_assert_eq!(decoder.finish(), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..32,
        ) {
            let mut decoder = MessageDecoder::new();
            'outer: for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                loop {
                    match decoder.next_message() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_prelude_never_panic(
            headers_len in 0u32..200,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let total = u32::try_from(16 + body.len()).unwrap();
            let mut frame = Vec::new();
            frame.put_u32(total);
            frame.put_u32(headers_len);
            let crc = crc32fast::hash(&frame);
            frame.put_u32(crc);
            frame.extend_from_slice(&body);
            let crc = crc32fast::hash(&frame);
            frame.put_u32(crc);
            let mut decoder = MessageDecoder::new();
            decoder.push(&frame);
            let _ = decoder.next_message();
        }
    }
}
