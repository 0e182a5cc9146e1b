//! The framed codec used on every Unix socket: a 4-byte big-endian length, then that many
//! bytes of a bincode-encoded message (the framing of tokio-util's `LengthDelimitedCodec`,
//! implemented here so that the cap is checked before any buffering and errors are typed).
//!
//! The length is checked against a cap *before* anything is buffered or allocated, and the
//! bincode decoder runs with the same cap, so a hostile peer can neither make us allocate
//! more than one frame's worth of memory nor crash us: oversized, truncated and garbage
//! input all come back as a [`FrameError`].

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// The largest frame either side accepts or sends: 16 MiB. Bulk data (bundles, tars) never
/// travels in frames; it streams over HTTP.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Bytes in the length prefix.
const HEADER_LEN: usize = 4;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced (or we tried to send) a frame above the cap.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The connection closed with a partial frame in the buffer.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
    },
    /// The frame arrived whole but is not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message could not be encoded (it does not fit the frame cap, or serde failed).
    #[error("could not encode message: {0}")]
    Encode(String),
    /// The transport failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// The bincode configuration of every frame: standard (varint) encoding, with decoding
/// limited to one frame's size so that a length field inside a frame cannot request an
/// unbounded allocation.
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes one message to its bincode bytes (no length prefix).
pub fn encode_message<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = bincode::serde::encode_to_vec(message, bincode_config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes one message from exactly `bytes` (no length prefix). Trailing bytes are an error:
/// a frame holds one message.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (message, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(FrameError::Malformed(format!(
            "{} unexpected bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(message)
}

/// A typed codec: decodes frames into `In`, encodes `Out` into frames.
///
/// Use it with [`tokio_util::codec::Framed`]. After a decode error the stream is out of
/// sync; callers answer with an error reply if they can, then close the connection.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    max: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with the default cap, [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A codec with a smaller cap (never larger than [`MAX_FRAME_LEN`]).
    pub fn with_max_frame_len(max: usize) -> Self {
        Self {
            max: max.min(MAX_FRAME_LEN),
            _types: PhantomData,
        }
    }

    /// The same framing state, retyped: used to switch from the `Hello` handshake to the
    /// connection's message types without losing buffered bytes.
    pub fn retype<In2, Out2>(self) -> FrameCodec<In2, Out2> {
        FrameCodec {
            max: self.max,
            _types: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        // Stateless: the header stays in the buffer until the whole frame has arrived.
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = (&src[..HEADER_LEN]).get_u32() as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let frame = src.split_to(len);
        decode_message(&frame).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let bytes = encode_message(&item)?;
        if bytes.len() > self.max {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: self.max,
            });
        }
        dst.reserve(HEADER_LEN + bytes.len());
        dst.put_u32(bytes.len() as u32);
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Msg {
        text: String,
        items: Vec<u64>,
    }

    fn frame(payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut codec = FrameCodec::<Msg, Msg>::with_max_frame_len(1024);
        let mut buf = BytesMut::from(&(u32::MAX).to_be_bytes()[..]);
        let err = codec.decode(&mut buf).expect_err("must refuse");
        assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == u32::MAX as usize));
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error() {
        let mut codec = FrameCodec::<Msg, Msg>::new();
        let mut full = BytesMut::new();
        codec
            .encode(
                Msg {
                    text: "hi".into(),
                    items: vec![1, 2],
                },
                &mut full,
            )
            .expect("encode");
        let mut cut = BytesMut::from(&full[..full.len() - 1]);
        assert!(codec
            .decode(&mut cut)
            .expect("partial is not an error yet")
            .is_none());
        let err = codec.decode_eof(&mut cut).expect_err("eof mid-frame");
        assert!(matches!(err, FrameError::Truncated { .. }));
    }

    #[test]
    fn inner_length_bomb_does_not_allocate() {
        // A Vec<u64> whose varint length claims 2^62 elements inside a tiny frame.
        let mut payload = vec![0u8]; // empty string
        payload.push(0xFF); // bincode varint marker for u64
        payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let mut codec = FrameCodec::<Msg, Msg>::new();
        let err = codec.decode(&mut frame(&payload)).expect_err("must refuse");
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = encode_message(&Msg {
            text: "a".into(),
            items: vec![],
        })
        .expect("encode");
        bytes.push(7);
        let mut codec = FrameCodec::<Msg, Msg>::new();
        assert!(matches!(
            codec.decode(&mut frame(&bytes)),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn encode_refuses_messages_above_the_cap() {
        let mut codec = FrameCodec::<Msg, Msg>::with_max_frame_len(16);
        let err = codec
            .encode(
                Msg {
                    text: "x".repeat(100),
                    items: vec![],
                },
                &mut BytesMut::new(),
            )
            .expect_err("too big");
        assert!(matches!(err, FrameError::TooLarge { max: 16, .. }));
    }

    #[test]
    fn several_frames_in_one_buffer_decode_in_order() {
        let mut codec = FrameCodec::<Msg, Msg>::new();
        let mut buf = BytesMut::new();
        for i in 0..3 {
            codec
                .encode(
                    Msg {
                        text: i.to_string(),
                        items: vec![i],
                    },
                    &mut buf,
                )
                .expect("encode");
        }
        for i in 0..3 {
            let m = codec
                .decode(&mut buf)
                .expect("decode")
                .expect("whole frame");
            assert_eq!(m.items, vec![i]);
        }
        assert!(codec.decode(&mut buf).expect("empty").is_none());
    }
}
