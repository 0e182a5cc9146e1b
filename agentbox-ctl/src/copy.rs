//! `agentbox-ctl cp --to-host|--from-host`: files between the box and the host project,
//! through the host bridge and its policy (by default each copy waits for
//! `agentbox approve` on the host).
//!
//! To the host, the path is packed as a tar blob in `run/blobs/<blake3>` that the host
//! fetches and verifies; from the host, the host uploads through the relay's transfer API
//! and lands the files itself. Host paths are relative to the project root.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use agentbox_protocol::bridge::{BlobRef, HostRequest};
use agentbox_protocol::transfer::{append_entry, HashingWriter};

use crate::paths::Paths;

/// Long enough for someone to approve on the host.
const WAIT: Duration = Duration::from_secs(30 * 60);

fn refuse(message: &str) -> ExitCode {
    eprintln!("agentbox-ctl cp: {message}");
    ExitCode::from(1)
}

/// Copies box path `src` into the host project at `dest`.
pub fn to_host(paths: &Paths, src: &Path, dest: &str) -> ExitCode {
    if std::fs::symlink_metadata(src).is_err() {
        return refuse(&format!("{}: no such file or directory", src.display()));
    }
    let named = if src.file_name().is_some() && !src.ends_with("..") {
        src.to_path_buf()
    } else {
        std::fs::canonicalize(src).unwrap_or_else(|_| src.to_path_buf())
    };
    let Some(name) = named
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
    else {
        return refuse(&format!(
            "{}: name a file or directory with a UTF-8 name",
            src.display()
        ));
    };
    let blob_dir = paths.run_dir.join("blobs");
    if let Err(e) = std::fs::create_dir_all(&blob_dir) {
        return refuse(&format!("cannot create {}: {e}", blob_dir.display()));
    }
    let tmp = blob_dir.join(format!(".cp-{}", std::process::id()));
    let packed = (|| -> std::io::Result<(String, u64)> {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut builder = tar::Builder::new(HashingWriter::new(file));
        append_entry(&mut builder, src, Path::new(&name))?;
        let (digest, size, mut inner) = builder.into_inner()?.finish();
        std::io::Write::flush(&mut inner)?;
        Ok((digest, size))
    })();
    let (digest, size) = match packed {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return refuse(&format!("cannot pack {}: {e}", src.display()));
        }
    };
    let blob = blob_dir.join(&digest);
    if let Err(e) = std::fs::rename(&tmp, &blob) {
        return refuse(&format!("cannot store the archive: {e}"));
    }
    let request = HostRequest::CopyToHost {
        blob: BlobRef {
            blake3: digest,
            size,
        },
        name,
        dest: dest.to_string(),
    };
    let code = crate::host::submit(&paths.run_dir, request, crate::host::Wait::Follow(WAIT));
    let _ = std::fs::remove_file(&blob);
    code
}

/// Copies host project path `src` into the box at `dest` (relative to the current
/// directory).
pub fn from_host(paths: &Paths, src: &str, dest: &str) -> ExitCode {
    let dest = if Path::new(dest).is_absolute() {
        dest.to_string()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => {
                let joined = cwd.join(dest).display().to_string();
                if dest.ends_with('/') && !joined.ends_with('/') {
                    format!("{joined}/")
                } else {
                    joined
                }
            }
            Err(e) => return refuse(&format!("cannot read the current directory: {e}")),
        }
    };
    let request = HostRequest::CopyFromHost {
        src: src.to_string(),
        dest,
    };
    crate::host::submit(&paths.run_dir, request, crate::host::Wait::Follow(WAIT))
}
