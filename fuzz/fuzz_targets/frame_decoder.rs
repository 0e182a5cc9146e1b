//! Feeds arbitrary bytes to the frame decoder as every socket message type, in arbitrary
//! chunkings. Run with `cargo +nightly fuzz run frame_decoder` from the repo root.
#![no_main]

use agentbox_protocol::bridge::{RelayEvent, RelayRequest};
use agentbox_protocol::ctl::{CtlRequest, CtlResponse};
use agentbox_protocol::{FrameCodec, Hello};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn feed<T: serde::de::DeserializeOwned>(data: &[u8], chunk: usize) {
    let mut codec = FrameCodec::<T, T>::new();
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fuzz_target!(|data: &[u8]| {
    let (chunk, data) = match data.split_first() {
        Some((c, rest)) => (*c as usize, rest),
        None => return,
    };
    feed::<Hello>(data, chunk);
    feed::<CtlRequest>(data, chunk);
    feed::<CtlResponse>(data, chunk);
    feed::<RelayRequest>(data, chunk);
    feed::<RelayEvent>(data, chunk);
});
