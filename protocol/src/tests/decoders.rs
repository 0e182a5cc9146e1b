//! Garbage for the decoders, and what each must answer to it.

use bytes::BytesMut;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::Decoder;

use crate::frame::FrameError;
use crate::FrameCodec;

/// The cap of the codec the garbage tests decode with: small, so that an announced length
/// just above it is a cheap case and a decoder that ignored it would be seen reserving.
pub(super) const GARBAGE_CAP: usize = 4096;

/// Decoding arbitrary bytes as `T` returns the answer the framing rules give, never a
/// panic: fewer bytes than the header or than the announced frame are "need more" (and
/// `Truncated` at eof), a length above the cap is `TooLarge` from the header alone, a whole
/// frame is a value or `Malformed`, consumed whole either way. The buffer never grows past
/// one frame of the cap.
pub(super) fn decode_garbage<T: DeserializeOwned>(bytes: &[u8]) {
    let mut codec = FrameCodec::<T, T>::with_max_frame_len(GARBAGE_CAP);
    let mut buf = BytesMut::from(bytes);
    let bound = (2 * (4 + GARBAGE_CAP)).max(buf.capacity());
    let mut stopped = false;
    for _ in 0..8 {
        let before = buf.len();
        let announced =
            (before >= 4).then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize);
        let result = codec.decode(&mut buf);
        assert!(
            buf.capacity() <= bound,
            "the decoder reserved {} bytes for a {GARBAGE_CAP}-byte cap",
            buf.capacity()
        );
        match announced {
            None => {
                assert!(
                    matches!(result, Ok(None)),
                    "{before} bytes: {result:?}",
                    result = result.map(|v| v.is_some())
                );
                assert_eq!(buf.len(), before, "a short header was consumed");
                stopped = true;
                break;
            }
            Some(len) if len > GARBAGE_CAP => {
                match result {
                    Err(FrameError::TooLarge { len: l, max }) => {
                        assert_eq!((l, max), (len, GARBAGE_CAP));
                    }
                    other => panic!(
                        "length {len} over the cap: {:?}",
                        other.map(|v| v.is_some())
                    ),
                }
                return;
            }
            Some(len) if before < 4 + len => {
                assert!(
                    matches!(result, Ok(None)),
                    "partial frame of {len}: {:?}",
                    result.map(|v| v.is_some())
                );
                assert_eq!(buf.len(), before, "a partial frame was consumed");
                stopped = true;
                break;
            }
            Some(len) => {
                assert_eq!(
                    buf.len(),
                    before - 4 - len,
                    "the frame was not consumed whole"
                );
                match result {
                    Ok(Some(_)) => {}
                    Err(FrameError::Malformed(_)) => return,
                    other => panic!("a whole frame of {len}: {:?}", other.map(|v| v.is_some())),
                }
            }
        }
    }
    let left = buf.len();
    match codec.decode_eof(&mut buf) {
        Ok(None) => assert_eq!(left, 0, "{left} bytes left unreported at eof"),
        Err(FrameError::Truncated { buffered }) => assert_eq!(buffered, left),
        // After 8 whole frames the next may be anything.
        Ok(Some(_)) | Err(FrameError::Malformed(_) | FrameError::TooLarge { .. }) if !stopped => {}
        other => panic!(
            "eof after a partial frame: {:?}",
            other.map(|v| v.is_some())
        ),
    }
}

/// JSON documents, a few levels deep, made mostly of the term messages' own field
/// names and value kinds, so that some decode and most almost do.
pub(super) fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        (0u64..2000).prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("detached".to_string()),
            Just("session_ended".to_string()),
            "[a-z_]{0,8}"
        ]
        .prop_map(serde_json::Value::String),
    ];
    let key = prop_oneof![
        proptest::sample::select(vec![
            "cols",
            "rows",
            "size",
            "session",
            "shell",
            "term",
            "read_only",
            "keep_ms",
            "output_offset",
            "input_offset",
            "reason",
            "produced",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Garbage JSON gets the answer serde_json's own reading of it gives: bytes that are
/// no JSON document are an error about the input, never a value; a document
/// decodes to exactly what its parsed tree decodes to, a value that comes out of garbage
/// says what the document said (its fields as given, absent ones only as their
/// defaults) and writes back to JSON that reads as the same value.
pub(super) fn json_garbage<T>(bytes: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let typed = serde_json::from_slice::<T>(bytes);
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(syntax) => {
            // The typed reader may stop earlier (at a value of the wrong type), but it
            // must stop with an error about the input.
            let err = typed.expect_err("bytes that are not JSON decoded to a value");
            assert!(!err.is_io(), "{err} (the bytes: {syntax})");
        }
        Ok(tree) => match (typed, serde_json::from_value::<T>(tree.clone())) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                // Nothing given was changed on the way in: a field the document has
                // comes out as it was, one it lacks only as its declared default.
                let out = serde_json::to_value(&a).expect("json");
                if let (Some(out), Some(given)) = (out.as_object(), tree.as_object()) {
                    for (k, v) in out {
                        match given.get(k) {
                            Some(g) => assert_eq!(g, v, "`{k}` of {tree} became {v}"),
                            None => assert!(
                                v.is_null() || v == &serde_json::Value::Bool(false),
                                "`{k}` = {v} came from nowhere in {tree}"
                            ),
                        }
                    }
                }
                let again: T = serde_json::from_str(&serde_json::to_string(&a).expect("json"))
                    .expect("a decoded value does not read back");
                assert_eq!(again, a);
            }
            (Err(a), Err(_)) => {
                assert_eq!(
                    a.classify(),
                    serde_json::error::Category::Data,
                    "{a} for {tree}"
                );
            }
            (a, b) => panic!("bytes and tree disagree on {tree}: {a:?} vs {b:?}"),
        },
    }
}
