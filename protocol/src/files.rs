//! The JSON of the relay's file-transfer API (host ↔ relay, under `/v1/`).
//!
//! Both directions stream raw bytes (one file) or a tar (anything else) and are verified by
//! blake3 before anything becomes visible:
//!
//! - **Upload** (host → box): `PUT /v1/uploads/{id}` with headers
//!   [`OFFSET_HEADER`] and [`SIZE_HEADER`] appends the body at that offset (a wrong offset
//!   is `409` with the real one in [`OFFSET_HEADER`]); `GET /v1/uploads/{id}` is an
//!   [`UploadStatus`]; `POST /v1/uploads/{id}/land` with a [`LandRequest`] checks the
//!   digest and renames the result into place ([`Landed`]); `DELETE` drops it.
//! - **Download** (box → host): `POST /v1/downloads` with a [`DownloadRequest`] answers a
//!   [`DownloadInfo`]; `GET /v1/downloads/{id}` streams it (`Range: bytes=N-` resumes);
//!   `GET /v1/downloads/{id}/digest` is a [`DownloadDigest`], computed while the bytes
//!   travel; `DELETE` drops it.
//!
//! Transfer ids are chosen by the side that starts the transfer and checked with
//! [`is_transfer_id`]; one the other side sends is a [`TransferId`], which only parses
//! when it is plain (it may end up in a staging file name).

use serde::{Deserialize, Serialize};

/// Request header: the offset the body starts at; response header on `409`: the offset
/// the box has.
pub const OFFSET_HEADER: &str = "x-agentbox-offset";
/// Request header of an upload: the size of the whole transfer.
pub const SIZE_HEADER: &str = "x-agentbox-size";

/// Whether `s` is an acceptable transfer id: 16 to 64 lowercase hex digits or `-`.
pub fn is_transfer_id(s: &str) -> bool {
    (16..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// A transfer id received from the other side, checked by [`is_transfer_id`] when it is
/// made (also when deserialized): it holds no `/`, `.` or anything else a path could use,
/// so it can name a staging file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(try_from = "String", into = "String")]
pub struct TransferId(#[cfg_attr(test, proptest(regex = "[0-9a-f-]{16,64}"))] String);

impl TransferId {
    /// A fresh random id (32 hex digits).
    pub fn random() -> std::io::Result<Self> {
        let mut id = crate::token::new_bridge_token()?;
        id.truncate(32);
        Self::try_from(id).map_err(std::io::Error::other)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TransferId {
    type Error = String;

    /// The one way a `TransferId` is made: refuses anything but 16 to 64 lowercase hex
    /// digits or `-`.
    fn try_from(s: String) -> Result<Self, String> {
        if is_transfer_id(&s) {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{}` is not a transfer id (16 to 64 lowercase hex digits or `-`)",
                s.escape_debug()
            ))
        }
    }
}

impl From<TransferId> for String {
    fn from(id: TransferId) -> Self {
        id.0
    }
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// What the bytes of a transfer are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// One regular file's content.
    File,
    /// A tar of one or more top-level entries, extracted with the hardened extractor.
    Tar,
}

/// `GET /v1/uploads/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UploadStatus {
    /// Bytes the box holds so far; the next `PUT` starts here.
    pub offset: u64,
    /// Whether a `PUT` is still writing (a cut connection may take a moment to settle).
    pub busy: bool,
}

/// `POST /v1/uploads/{id}/land`: verify the upload and put it in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LandRequest {
    /// blake3 of the whole upload, lowercase hex.
    pub blake3: String,
    /// Its size.
    pub size: u64,
    /// File or tar.
    pub kind: TransferKind,
    /// Where it goes in the box: relative paths are relative to the workspace; `docker cp`
    /// rules (`land::target_for`).
    pub dest: String,
    /// For [`TransferKind::File`]: the file's name when `dest` is a directory. For
    /// [`TransferKind::Tar`]: `"."` when the source was written `DIR/.` (its one top-level
    /// directory's contents land in an existing `dest`), else none.
    pub name: Option<String>,
    /// For [`TransferKind::File`]: permission bits (the low 12 bits; set-id bits dropped).
    pub mode: Option<u32>,
}

/// What a landing wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Landed {
    /// The paths written at the top level, absolute in the box.
    pub paths: Vec<String>,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// `POST /v1/downloads`: start reading a box path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DownloadRequest {
    /// The path in the box; relative paths are relative to the workspace.
    pub path: String,
    /// When set, `path` is a directory and the download is a tar of exactly these files
    /// under it, named by their relative paths (no top-level directory).
    #[serde(default)]
    pub files: Option<Vec<String>>,
}

/// The answer to a [`DownloadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DownloadInfo {
    /// The transfer id for the `GET`s (checked when parsed).
    pub id: TransferId,
    /// A regular file's bytes, or a tar whose one top-level entry is `name`.
    pub kind: TransferKind,
    /// Bytes to fetch.
    pub size: u64,
    /// The base name of the path.
    pub name: String,
    /// Permission bits of a [`TransferKind::File`].
    pub mode: u32,
}

/// `GET /v1/downloads/{id}/digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DownloadDigest {
    /// blake3 of the bytes served, lowercase hex.
    pub blake3: String,
    /// Their count.
    pub size: u64,
}

/// A fresh random transfer id (32 hex digits).
pub fn new_transfer_id() -> std::io::Result<String> {
    TransferId::random().map(String::from)
}

/// `POST /v1/seed/{id}` and `POST /v1/sync/{id}`: use a finished upload, after checking
/// its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UseUpload {
    /// blake3 of the whole upload, lowercase hex.
    pub blake3: String,
    /// Its size.
    pub size: u64,
}
