//! `agentbox-ctl git push` (what the `git` shim calls): the box holds no credentials, so
//! a push is a request to the host. The commits since the seed travel as a git bundle
//! named by its blake3; the host fetches it into a quarantine ref and pushes the box's
//! own branch itself. Only allowlisted flags and a remote *name* cross over.
//!
//! Past 600 lines only with its tests (the code is ~570): the argument allowlists and
//! their attack tables stay in one file.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use agentbox_protocol::bridge::{BlobRef, GitFlag, GitOp, GitRequest, HostRequest, TagRef};

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
    /// The branch to push to when it is not the box's own (the host asks for approval).
    pub target: Option<String>,
}

/// Parses `git push` arguments; the error says what is not allowed and why. What is pushed
/// is always the box's checked-out commit (`HEAD`, the box branch, or the current branch
/// by name); it may go to another plain branch name, which the host's policy decides on
/// (`policy.pushOtherBranch`, ask by default).
pub fn parse_push(
    args: &[String],
    box_branch: &str,
    current: Option<&str>,
) -> Result<PushArgs, String> {
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
    let refspecs = positional.get(1..).unwrap_or_default();
    if refspecs.len() > 1 {
        return Err("push one branch at a time".into());
    }
    let mut target = None;
    if let Some(refspec) = refspecs.first() {
        if refspec.starts_with('+') {
            return Err(format!(
                "`{refspec}`: a forced refspec is not allowed; use --force-with-lease"
            ));
        }
        let (source, dest) = refspec.split_once(':').unwrap_or((refspec, refspec));
        let strip = |s: &'_ str| -> String { s.trim_start_matches("refs/heads/").to_string() };
        let source = strip(source);
        let checked_out =
            source == "HEAD" || source == box_branch || Some(source.as_str()) == current;
        if !checked_out {
            return Err(format!(
                "only the checked-out commit can be pushed (asked: `{refspec}`): check the branch out, or push HEAD:BRANCH"
            ));
        }
        let dest = if dest == "HEAD" {
            box_branch.to_string()
        } else {
            strip(dest)
        };
        if !valid_branch(&dest) || dest.starts_with("refs/") {
            return Err(format!("`{dest}` is not a plain branch name"));
        }
        if dest != box_branch {
            target = Some(dest);
        }
    }
    Ok(PushArgs {
        remote,
        flags,
        target,
    })
}

/// Parsed `git fetch` / `git pull` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct FetchArgs {
    /// The remote name, if given.
    pub remote: Option<String>,
    /// The branch, if given.
    pub branch: Option<String>,
    /// Allowlisted flags (`-q`, `-v`).
    pub flags: Vec<GitFlag>,
}

/// Whether `b` is a plain branch name.
pub fn valid_branch(b: &str) -> bool {
    !b.is_empty()
        && b.len() < 200
        && !b.starts_with('-')
        && !b.contains("..")
        && !b.ends_with('/')
        && !b.to_ascii_lowercase().ends_with(".lock")
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/-_.".contains(&c))
}

/// Parses `git fetch|pull [-q|-v] [REMOTE [BRANCH]]`.
pub fn parse_fetch(op: &str, args: &[String]) -> Result<FetchArgs, String> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    for arg in args {
        match GitFlag::from_arg(arg) {
            Some(f @ (GitFlag::Quiet | GitFlag::Verbose)) => flags.push(f),
            _ if arg.starts_with('-') => {
                return Err(format!(
                    "`{arg}` is not allowed: the host runs the {op}; allowed flags are -q and -v"
                ))
            }
            _ => positional.push(arg.as_str()),
        }
    }
    if positional.len() > 2 {
        return Err(format!(
            "git {op} through the host takes at most a remote and one branch"
        ));
    }
    let remote = match positional.first() {
        Some(r) if valid_remote(r) => Some((*r).to_string()),
        Some(r) => {
            return Err(format!(
                "`{r}` is not a remote name: the host fetches from its own remotes, by name"
            ))
        }
        None => None,
    };
    let branch = match positional.get(1) {
        Some(b) => {
            let b = b.trim_start_matches("refs/heads/");
            if !valid_branch(b) {
                return Err(format!("`{b}` is not a branch name"));
            }
            Some(b.to_string())
        }
        None => None,
    };
    Ok(FetchArgs {
        remote,
        branch,
        flags,
    })
}

/// Git's global options before the command, and the command with its arguments.
pub struct Globals<'a> {
    /// `-c` values, for the box's own git steps.
    pub config: Vec<String>,
    /// `-C` directory.
    pub dir: Option<String>,
    /// The command and its arguments.
    pub rest: &'a [String],
}

/// Splits git's global options (`-c k=v`, `-C dir`) from the command. The `-c` values
/// apply to the box's own git steps (a pull's merge), never to what the host runs.
pub fn split_globals(args: &[String]) -> Result<Globals<'_>, String> {
    let mut config = Vec::new();
    let mut dir = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-c" => {
                let v = args.get(i + 1).ok_or("`-c` needs a value")?;
                config.push(v.clone());
                i += 2;
            }
            "-C" => {
                dir = Some(args.get(i + 1).ok_or("`-C` needs a directory")?.clone());
                i += 2;
            }
            o if o.starts_with('-') => {
                return Err(format!("the git option `{o}` before the command is not supported for commands that go through the host"))
            }
            _ => break,
        }
    }
    Ok(Globals {
        config,
        dir,
        rest: &args[i..],
    })
}

/// `agentbox-ctl git …`.
pub fn run(paths: &Paths, args: &[String]) -> ExitCode {
    let Globals {
        config,
        dir,
        rest: args,
    } = match split_globals(args) {
        Ok(v) => v,
        Err(e) => return refuse(&e),
    };
    if let Some(d) = dir {
        if let Err(e) = std::env::set_current_dir(&d) {
            return refuse(&format!("cannot change to {d}: {e}"));
        }
    }
    match args.first().map(String::as_str) {
        Some("push") => push(paths, &args[1..]),
        Some(op @ ("pull" | "fetch")) => fetch(paths, op, &args[1..], &config),
        Some("clone") => refuse("`git clone` is not carried to the host: the workspace is already a clone; use `git fetch REMOTE BRANCH`"),
        _ => refuse("agentbox-ctl git handles push, pull, fetch and clone; run other git commands directly"),
    }
}

/// `git fetch` / `git pull` through the host: the host fetches with its credentials and
/// sends back a bundle of the fetched refs, which lands in `.git/` under its digest.
fn fetch(paths: &Paths, op: &str, args: &[String], config: &[String]) -> ExitCode {
    let parsed = match parse_fetch(op, args) {
        Ok(p) => p,
        Err(e) => return refuse(&e),
    };
    let request = HostRequest::Git(GitRequest {
        op: if op == "pull" {
            GitOp::Pull
        } else {
            GitOp::Fetch
        },
        remote: parsed.remote.clone(),
        branch: parsed.branch.clone(),
        flags: parsed.flags,
        bundle: None,
        tags: Vec::new(),
    });
    let wait = crate::host::Wait::Follow(Duration::from_secs(600));
    let (code, outcome) = crate::host::submit_for_outcome(&paths.run_dir, request, wait);
    let Some(outcome) = outcome.filter(|o| o.exit_code == 0) else {
        return code;
    };
    let Some(blob) = outcome.bundle else {
        return code; // nothing new
    };
    let git_dir = match Command::new(real_git())
        .args(["rev-parse", "--absolute-git-dir"])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => return refuse("not inside a git repository"),
    };
    let bundle = Path::new(&git_dir).join(format!("{}.bundle", blob.blake3));
    let verified = hash_file(&bundle).is_ok_and(|(d, n)| d == blob.blake3 && n == blob.size);
    if !verified {
        let _ = std::fs::remove_file(&bundle);
        return refuse("the bundle from the host is missing or corrupt; nothing was fetched");
    }
    let imported = Command::new(real_git())
        .args(["fetch", "-q", "--no-tags", "--no-write-fetch-head"])
        .arg(&bundle)
        .arg("+refs/remotes/*:refs/remotes/*")
        .status();
    let _ = std::fs::remove_file(&bundle);
    if !imported.is_ok_and(|s| s.success()) {
        return refuse("cannot import the host's bundle");
    }
    if op == "fetch" {
        return ExitCode::SUCCESS;
    }
    // The host says what it fetched on the last line of its output: `remote/branch`.
    let Some(tracking) = outcome
        .stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("fetched "))
    else {
        return refuse("the host did not say which branch it fetched");
    };
    let mut merge = Command::new(real_git());
    for c in config {
        merge.arg("-c").arg(c);
    }
    let merged = merge
        .args(["merge", "--no-edit", &format!("refs/remotes/{tracking}")])
        .status();
    match merged {
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => refuse(&format!("cannot run git merge: {e}")),
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
    let current = Command::new(real_git())
        .args(["symbolic-ref", "--short", "-q", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let parsed = match parse_push(args, &branch, current.as_deref()) {
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
    // The commits the host lacks: those since what it gave the box (the seed, or the last
    // sync) and since what it took in an earlier answered push. When that leaves nothing
    // — the host has this HEAD from an earlier push, maybe a dry run or one to another
    // branch or remote — the host is asked all the same, with the commits since the seed:
    // only its push knows what the remote has. The box never concludes "up to date" from
    // its own records, except for a HEAD the seed already holds (the host's own commit).
    // `--tags` pushes the box's own tags, by name: each travels as its ref in the bundle
    // (with its objects when the host lacks them) and by name and object in the request.
    let tags = if parsed.flags.contains(&GitFlag::Tags) {
        match box_tags() {
            Ok(t) => t,
            Err(e) => return refuse(&e),
        }
    } else {
        Vec::new()
    };
    let mut bases: Vec<&str> = [SEED_REF, HOST_HAS_REF]
        .into_iter()
        .filter(|r| ref_exists(r))
        .collect();
    let out = loop {
        let out = match bundle(&tmp, &bases, &tags) {
            Ok(o) => o,
            Err(e) => return refuse(&format!("cannot run git: {e}")),
        };
        let empty =
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("empty bundle");
        if empty && bases.contains(&HOST_HAS_REF) {
            bases.retain(|r| *r != HOST_HAS_REF);
            continue;
        }
        break out;
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("empty bundle") {
            eprintln!("Everything up-to-date (the box has no commits since the host's)");
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
        branch: parsed.target,
        flags: parsed.flags,
        bundle: Some(BlobRef {
            blake3: digest,
            size,
        }),
        tags,
    });
    let wait = crate::host::Wait::Follow(Duration::from_secs(600));
    let (code, answer) = crate::host::submit_with_status(&paths.run_dir, request, wait);
    // Answered: the host has these commits now (it fetched the bundle before pushing), so
    // the next bundle can leave them out; and the blob is no longer needed. This records
    // what the host holds, not what any remote has.
    let _ = std::fs::remove_file(&blob);
    if answer == Some(0) {
        let _ = Command::new(real_git())
            .args(["update-ref", HOST_HAS_REF, &head])
            .status();
    }
    code
}

/// What the host gave the box: set by the seed and by each sync.
const SEED_REF: &str = "refs/agentbox/seed";
/// The last HEAD the host took in an answered push (it then holds its commits).
const HOST_HAS_REF: &str = "refs/agentbox/host-has";

/// `agentbox-ctl unpushed`: prints, as JSON, `commits`: how many commits of the
/// workspace's HEAD the host has not received — neither given by the seed or a sync
/// (`refs/agentbox/seed`, and the host's commits a sync brought, `refs/agentbox/host`),
/// nor fetched from the host's remotes (`refs/remotes/`), nor taken by an answered push
/// (`refs/agentbox/host-has`), 0 when HEAD is unborn — and
/// `changed`: the paths with uncommitted changes (tracked, against HEAD) or untracked and
/// not ignored.
pub fn unpushed(paths: &Paths) -> ExitCode {
    match unpushed_work(&paths.workspace) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => refuse(&e),
    }
}

fn unpushed_work(workspace: &Path) -> Result<serde_json::Value, String> {
    let git = |args: &[&str]| -> Result<Vec<u8>, String> {
        let out = Command::new(real_git())
            .arg("-C")
            .arg(workspace)
            .args(args)
            .env_remove("AGENTBOX_BRIDGE_TOKEN")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let has = |r: &str| git(&["rev-parse", "--verify", "-q", &format!("{r}^{{commit}}")]).is_ok();
    let names = |raw: Vec<u8>| -> Vec<String> {
        raw.split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    let (commits, ids, mut changed) = if has("HEAD") {
        // `--remotes`: what `git fetch|pull` imported came from the host's remotes.
        let mut args = vec!["rev-list", "--count", "HEAD", "--not", "--remotes"];
        args.extend(
            [SEED_REF, HOST_HAS_REF, "refs/agentbox/host"]
                .into_iter()
                .filter(|r| has(r)),
        );
        let count = String::from_utf8_lossy(&git(&args)?).trim().to_string();
        let count: u64 = count
            .parse()
            .map_err(|_| format!("git rev-list --count said `{count}`"))?;
        // The commits themselves (the newest ones, up to a cap): the host may hold some
        // that this box's records miss (a push it carried out whose answer never arrived).
        args[1] = "--max-count=1000";
        let ids: Vec<String> = String::from_utf8_lossy(&git(&args)?)
            .lines()
            .map(str::to_string)
            .collect();
        (
            count,
            ids,
            names(git(&["diff", "-z", "--name-only", "HEAD"])?),
        )
    } else {
        (0, Vec::new(), names(git(&["ls-files", "-z", "-c"])?))
    };
    changed.extend(names(git(&["ls-files", "-z", "-o", "--exclude-standard"])?));
    changed.sort();
    changed.dedup();
    Ok(serde_json::json!({ "commits": commits, "ids": ids, "changed": changed }))
}

fn ref_exists(name: &str) -> bool {
    Command::new(real_git())
        .args(["rev-parse", "--verify", "-q", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `git bundle create PATH HEAD refs/tags/TAG… ^BASE…`.
fn bundle(path: &Path, bases: &[&str], tags: &[TagRef]) -> std::io::Result<std::process::Output> {
    let mut cmd = Command::new(real_git());
    cmd.args(["bundle", "create", "-q"]).arg(path).arg("HEAD");
    for tag in tags {
        cmd.arg(format!("refs/tags/{}", tag.name));
    }
    for base in bases {
        cmd.arg(format!("^{base}"));
    }
    cmd.output()
}

/// The most tags one push sends.
const MAX_TAGS: usize = 1000;

/// The box's tags, by name and object; a name the host would not take is refused here.
fn box_tags() -> Result<Vec<TagRef>, String> {
    let out = Command::new(real_git())
        .args([
            "for-each-ref",
            "--format=%(objectname) %(refname:strip=2)",
            "refs/tags",
        ])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot list the box's tags: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut tags = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((object, name)) = line.split_once(' ') else {
            continue;
        };
        if !valid_branch(name) || name.starts_with("refs/") {
            return Err(format!(
                "tag `{name}` cannot be pushed: use letters, digits, `/-_.` in tag names"
            ));
        }
        tags.push(TagRef {
            name: name.to_string(),
            object: object.to_string(),
        });
    }
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "the box has {} tags; --tags pushes at most {MAX_TAGS}",
            tags.len()
        ));
    }
    Ok(tags)
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
            parse_push(&args(&[]), b, Some(b)),
            Ok(PushArgs {
                remote: None,
                flags: vec![],
                target: None,
            })
        );
        assert_eq!(
            parse_push(
                &args(&["-u", "origin", "HEAD", "--force-with-lease"]),
                b,
                Some(b)
            ),
            Ok(PushArgs {
                remote: Some("origin".into()),
                flags: vec![GitFlag::ForceWithLease],
                target: None,
            })
        );
        assert!(parse_push(&args(&["origin", "agentbox/b1"]), b, Some(b)).is_ok());
        assert!(parse_push(&args(&["origin", "HEAD:agentbox/b1"]), b, None).is_ok());
        // Another branch is a request the host's policy decides on.
        for (argv, current) in [
            (&["origin", "HEAD:main"][..], Some(b)),
            (&["origin", "agentbox/b1:refs/heads/main"], Some(b)),
            (&["origin", "main"], Some("main")),
        ] {
            assert_eq!(
                parse_push(&args(argv), b, current).map(|p| p.target),
                Ok(Some("main".into())),
                "{argv:?}"
            );
        }
        for hostile in [
            &["--receive-pack=touch /tmp/x", "origin"][..],
            &["--exec=sh"],
            &["-c", "core.sshCommand=sh"],
            &["--force"],
            &["/tmp/evil.git"],
            &["https://evil.example/x.git"],
            &["origin", "main"],
            &["origin", "+agentbox/other"],
            &["origin", "HEAD:../x"],
            &["origin", "HEAD:refs/tags/v1"],
            &["origin", "HEAD:-x"],
            &["origin", "HEAD:a", "HEAD:b"],
            &["--mirror"],
        ] {
            assert!(
                parse_push(&args(hostile), b, Some(b)).is_err(),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn fetch_arguments_are_a_remote_a_branch_and_quiet_flags() {
        assert_eq!(
            parse_fetch("pull", &args(&["-q", "origin", "main"])).expect("ok"),
            FetchArgs {
                remote: Some("origin".into()),
                branch: Some("main".into()),
                flags: vec![GitFlag::Quiet]
            }
        );
        for bad in [
            &["--upload-pack=sh"][..],
            &["origin", "main", "extra"],
            &["/tmp/x.git", "main"],
            &["origin", "../main"],
            &["origin", "-main"],
            &["--tags"],
        ] {
            assert!(parse_fetch("fetch", &args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn global_options_are_split_off() {
        let a = args(&["-c", "user.name=x", "-C", "sub", "pull", "origin", "main"]);
        let g = split_globals(&a).expect("ok");
        assert_eq!(g.config, ["user.name=x"]);
        assert_eq!(g.dir.as_deref(), Some("sub"));
        assert_eq!(g.rest, &a[4..]);
        assert!(split_globals(&args(&["--exec-path=/x", "push"])).is_err());
    }
}
