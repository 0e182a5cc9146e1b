//! `agentbox-ctl git push` (what the `git` shim calls): the box holds no credentials, so
//! a push is a request to the host. The commits since the seed travel as a git bundle
//! named by its blake3; the host fetches it into a quarantine ref and pushes the box's
//! own branch itself. Only allowlisted flags and a remote *name* cross over.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use agentbox_protocol::bridge::{BlobRef, GitFlag, GitOp, GitRequest, HostRequest};

use crate::paths::Paths;

fn real_git() -> String {
    std::env::var("AGENTBOX_REAL_GIT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/usr/bin/git".into())
}

fn refuse(message: &str) -> ExitCode {
    eprintln!("agentbox-ctl git: {message}");
    ExitCode::from(1)
}

/// A remote *name* (never a URL or path): what the host will look up in its own config.
pub fn valid_remote(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.len() < 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parsed `git push` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct PushArgs {
    /// The remote name, if given.
    pub remote: Option<String>,
    /// Allowlisted flags.
    pub flags: Vec<GitFlag>,
}

/// Parses `git push` arguments; the error says what is not allowed and why.
pub fn parse_push(args: &[String], box_branch: &str) -> Result<PushArgs, String> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    for arg in args {
        if let Some(flag) = GitFlag::from_arg(arg) {
            flags.push(flag);
        } else if arg == "-u" || arg == "--set-upstream" {
            // The host pushes; upstream tracking in the box has no meaning there.
        } else if arg.starts_with('-') {
            return Err(format!(
                "`{arg}` is not allowed: the host runs the push; allowed flags are --force-with-lease, --tags, --dry-run, -q, -v"
            ));
        } else {
            positional.push(arg.as_str());
        }
    }
    let remote = match positional.first() {
        Some(r) if valid_remote(r) => Some((*r).to_string()),
        Some(r) => {
            return Err(format!(
                "`{r}` is not a remote name: the host pushes to its own remotes, by name"
            ))
        }
        None => None,
    };
    for refspec in positional.iter().skip(1) {
        let target = refspec
            .rsplit(':')
            .next()
            .unwrap_or(refspec)
            .trim_start_matches('+')
            .trim_start_matches("refs/heads/");
        let source = refspec
            .split(':')
            .next()
            .unwrap_or(refspec)
            .trim_start_matches('+');
        let ours =
            |s: &str| s == "HEAD" || s == box_branch || s == format!("refs/heads/{box_branch}");
        if !(ours(source) && (target == box_branch || target == "HEAD")) {
            return Err(format!(
                "only this box's branch `{box_branch}` can be pushed (asked: `{refspec}`)"
            ));
        }
    }
    Ok(PushArgs { remote, flags })
}

/// `agentbox-ctl git …`.
pub fn run(paths: &Paths, args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("push") => push(paths, &args[1..]),
        Some(op @ ("pull" | "fetch" | "clone")) => refuse(&format!(
            "`git {op}` goes to the host, and this version of the host bridge answers pushes only; run it on the host"
        )),
        _ => refuse("agentbox-ctl git handles push, pull, fetch and clone; run other git commands directly"),
    }
}

fn push(paths: &Paths, args: &[String]) -> ExitCode {
    let Some(box_name) = std::env::var("AGENTBOX_BOX_NAME")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return refuse("AGENTBOX_BOX_NAME is not set: git push works inside an agentbox box");
    };
    let branch = format!("agentbox/{box_name}");
    let parsed = match parse_push(args, &branch) {
        Ok(p) => p,
        Err(e) => return refuse(&e),
    };
    let blob_dir = paths.run_dir.join("blobs");
    if let Err(e) = std::fs::create_dir_all(&blob_dir) {
        return refuse(&format!("cannot create {}: {e}", blob_dir.display()));
    }
    let head = match Command::new(real_git())
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => return refuse("there is no commit to push"),
    };
    let tmp = blob_dir.join(format!(".bundle-{}", std::process::id()));
    let out = Command::new(real_git())
        .args(["bundle", "create", "-q"])
        .arg(&tmp)
        .args(["HEAD", "^refs/agentbox/seed"])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return refuse(&format!("cannot run git: {e}")),
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("empty bundle") {
            eprintln!("Everything up-to-date");
            return ExitCode::SUCCESS;
        }
        return refuse(&format!("git bundle failed: {}", stderr.trim()));
    }
    let (digest, size) = match hash_file(&tmp) {
        Ok(v) => v,
        Err(e) => return refuse(&format!("cannot read the bundle: {e}")),
    };
    let blob = blob_dir.join(&digest);
    if let Err(e) = std::fs::rename(&tmp, &blob) {
        return refuse(&format!("cannot store the bundle: {e}"));
    }
    let request = HostRequest::Git(GitRequest {
        op: GitOp::Push,
        remote: parsed.remote,
        branch: None,
        flags: parsed.flags,
        bundle: Some(BlobRef {
            blake3: digest,
            size,
        }),
    });
    let wait = crate::host::Wait::Follow(Duration::from_secs(600));
    let (code, answer) = crate::host::submit_with_status(&paths.run_dir, request, wait);
    // Answered: the host has these commits now (in its quarantine ref), so the next push
    // sends only what comes after them, and the blob is no longer needed.
    let _ = std::fs::remove_file(&blob);
    if answer == Some(0) {
        let _ = Command::new(real_git())
            .args(["update-ref", "refs/agentbox/seed", &head])
            .status();
    }
    code
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((hasher.finalize().to_hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn push_arguments_are_allowlisted() {
        let b = "agentbox/b1";
        assert_eq!(
            parse_push(&args(&[]), b),
            Ok(PushArgs {
                remote: None,
                flags: vec![]
            })
        );
        assert_eq!(
            parse_push(&args(&["-u", "origin", "HEAD", "--force-with-lease"]), b),
            Ok(PushArgs {
                remote: Some("origin".into()),
                flags: vec![GitFlag::ForceWithLease]
            })
        );
        assert!(parse_push(&args(&["origin", "agentbox/b1"]), b).is_ok());
        assert!(parse_push(&args(&["origin", "HEAD:agentbox/b1"]), b).is_ok());
        for hostile in [
            &["--receive-pack=touch /tmp/x", "origin"][..],
            &["--exec=sh"],
            &["-c", "core.sshCommand=sh"],
            &["--force"],
            &["/tmp/evil.git"],
            &["https://evil.example/x.git"],
            &["origin", "main"],
            &["origin", "HEAD:main"],
            &["origin", "agentbox/b1:refs/heads/main"],
            &["origin", "+agentbox/other"],
            &["--mirror"],
        ] {
            assert!(parse_push(&args(hostile), b).is_err(), "{hostile:?}");
        }
    }
}
