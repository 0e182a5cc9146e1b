//! The disk side of a streamed transfer, shared by the relay and the host.
//!
//! A [`PartFile`] is the staging file a transfer is received into: bytes are only ever
//! appended at its current end, hashed on the way, and runs of zeros become holes (so a
//! sparse file stays sparse). [`spawn_writer`] runs one on a blocking thread fed by a
//! channel, so that receiving from the network, hashing and writing overlap;
//! [`read_stream`] is the reverse, for serving a file from an offset.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;

/// Blocks of this size that are all zeros are skipped (left as a hole).
const BLOCK: usize = 1 << 20;

/// A staging file being appended to, with the blake3 of everything in it.
pub struct PartFile {
    file: File,
    hasher: blake3::Hasher,
    /// Bytes in the file, including a pending hole.
    len: u64,
    buf: Vec<u8>,
}

impl PartFile {
    /// Opens (or creates, mode 0600) `path` to append at `offset`, which must be its current
    /// length. `hashed` is the hasher of the first `offset` bytes if the caller kept it;
    /// otherwise they are read back and hashed.
    pub fn open(path: &Path, offset: u64, hashed: Option<blake3::Hasher>) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let len = file.metadata()?.len();
        if len != offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the staging file has {len} bytes, not {offset}"),
            ));
        }
        let hasher = match hashed {
            Some(h) if h.count() == offset => h,
            _ => {
                let mut h = blake3::Hasher::new();
                file.seek(SeekFrom::Start(0))?;
                io::copy(&mut (&mut file).take(offset), &mut h)?;
                h
            }
        };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            file,
            hasher,
            len: offset,
            buf: Vec::with_capacity(BLOCK),
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        while !data.is_empty() {
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.buf.iter().all(|&b| b == 0) {
            self.file.seek(SeekFrom::Current(self.buf.len() as i64))?;
        } else {
            self.file.write_all(&self.buf)?;
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered, fixes the length (a trailing hole included) and returns the
    /// hasher of the whole content and its length. The data is not synced; callers that
    /// land the file sync it first.
    pub fn finish(mut self) -> io::Result<(blake3::Hasher, u64)> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        self.file.set_len(self.len)?;
        Ok((self.hasher, self.len))
    }
}

/// Hashes the whole of `path` (blake3, hex) on a blocking thread.
pub async fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        let mut file = File::open(&path)?;
        let size = io::copy(&mut file, &mut hasher)?;
        Ok((hasher.finalize().to_hex().to_string(), size))
    })
    .await
    .map_err(io::Error::other)?
}

/// A [`PartFile`] on a blocking thread: send chunks, then drop the sender and await the
/// handle for the hasher and the length. Bytes sent before a failure of the network side
/// are kept, so the transfer can resume after them.
pub fn spawn_writer(
    mut part: PartFile,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<io::Result<(blake3::Hasher, u64)>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let handle = tokio::task::spawn_blocking(move || {
        let mut failed = None;
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = part.write(&chunk) {
                failed = Some(e);
                break;
            }
        }
        drop(rx);
        let finished = part.finish();
        match failed {
            Some(e) => Err(e),
            None => finished,
        }
    });
    (tx, handle)
}

/// Streams `len` bytes of `path` from `offset`, read on a blocking thread in 1 MiB pieces.
pub fn read_stream(
    path: &Path,
    offset: u64,
    len: u64,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let read = || -> io::Result<()> {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut left = len;
            while left > 0 {
                let want = left.min(BLOCK as u64) as usize;
                let mut buf = vec![0u8; want];
                let mut got = 0;
                while got < want {
                    match file.read(&mut buf[got..])? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the file shrank while it was being read",
                            ))
                        }
                        n => got += n,
                    }
                }
                left -= want as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // the reader went away
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_become_holes_and_the_digest_covers_everything() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let mut part = PartFile::open(&path, 0, None).expect("open");
        let zeros = vec![0u8; 8 * BLOCK];
        part.write(b"head").expect("write");
        part.write(&zeros).expect("write");
        part.write(b"tail").expect("write");
        let (hasher, len) = part.finish().expect("finish");
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&zeros);
        expected.extend_from_slice(b"tail");
        assert_eq!(len, expected.len() as u64);
        assert_eq!(std::fs::read(&path).expect("read"), expected);
        assert_eq!(hasher.finalize(), blake3::hash(&expected));
        let allocated = std::fs::metadata(&path).expect("meta").blocks() * 512;
        assert!(
            allocated < 4 * BLOCK as u64,
            "not sparse: {allocated} bytes"
        );
    }

    #[test]
    fn resuming_rehashes_or_continues_and_refuses_a_wrong_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let mut part = PartFile::open(&path, 0, None).expect("open");
        part.write(b"hello ").expect("write");
        let (kept, len) = part.finish().expect("finish");
        assert!(PartFile::open(&path, 3, None).is_err());
        for hashed in [Some(kept), None] {
            let mut part = PartFile::open(&path, len, hashed).expect("open");
            part.write(b"world").expect("write");
            let (h, n) = part.finish().expect("finish");
            assert_eq!(h.finalize(), blake3::hash(b"hello world"));
            assert_eq!(n, 11);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open")
                .set_len(6)
                .expect("truncate");
        }
    }

    #[tokio::test]
    async fn the_writer_thread_and_the_reader_stream_round_trip() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let data: Vec<u8> = (0..3 * BLOCK + 17).map(|i| (i % 251) as u8).collect();
        let (tx, handle) = spawn_writer(PartFile::open(&path, 0, None).expect("open"));
        for chunk in data.chunks(70_000) {
            tx.send(Bytes::copy_from_slice(chunk)).await.expect("send");
        }
        drop(tx);
        let (h, n) = handle.await.expect("join").expect("write");
        assert_eq!(n, data.len() as u64);
        assert_eq!(h.finalize(), blake3::hash(&data));
        let mut back = Vec::new();
        let mut s = std::pin::pin!(read_stream(&path, 5, data.len() as u64 - 5));
        while let Some(chunk) = s.next().await {
            back.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(back, data[5..]);
        assert_eq!(
            hash_file(&path).await.expect("hash").0,
            blake3::hash(&data).to_hex().to_string()
        );
    }
}
