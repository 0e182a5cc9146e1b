//! Files between host and box through the CLI: cp, sync, download.

mod common;

use common::*;

#[test]
fn cp_both_ways_through_the_cli() {
    let host = Host::new();
    let repo = host.repo("cpproj", "");
    host.ok(&repo, &["create", "--name", "c1"]);
    std::fs::create_dir_all(repo.join("out/sub")).expect("mkdir");
    std::fs::write(repo.join("out/sub/f.txt"), "from host\n").expect("write");
    // Into the workspace (relative box path), then under a new name.
    let written = host.ok(&repo, &["cp", "--json", "out", "c1:"]);
    let v: serde_json::Value = serde_json::from_str(&written).expect("json");
    assert!(
        v["written"][0]
            .as_str()
            .is_some_and(|p| p.ends_with("workspace/out")),
        "{v}"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "out/sub/f.txt"]),
        "from host\n"
    );
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo made in box > made.txt"],
    );
    host.ok(&repo, &["cp", "c1:made.txt", "got.txt"]);
    // Off a terminal, progress is one plain line on stderr (no redraws), and with --json
    // stdout is the JSON alone.
    std::fs::write(repo.join("big.bin"), vec![7u8; 2 << 20]).expect("write");
    let args = ["cp", "--json", "big.bin", "c1:big.bin"];
    let out = host.run(&repo, &args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is JSON only");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(!progress.contains('\r'), "{progress:?}");
    assert!(progress.contains("==> to c1: 2.0 MiB\n"), "{progress:?}");
    assert_eq!(
        std::fs::read_to_string(repo.join("got.txt")).expect("got"),
        "made in box\n"
    );
    host.fails(
        &repo,
        &["cp", "a", "b"],
        "one side of cp must be a box path",
    );
    host.fails(&repo, &["cp", "nobox:x", "y"], "no box named `nobox`");
    host.fails(&repo, &["cp", "c1:missing", "y"], "missing");
    host.ok(&repo, &["destroy", "-y", "--force", "c1"]);
}

#[test]
fn sync_sends_only_what_changed_and_the_box_wins_conflicts() {
    let host = Host::new();
    let repo = host.repo("syncproj", "");
    std::fs::write(repo.join("notes/mine.md"), "seeded\n").expect("write");
    host.ok(&repo, &["create", "--name", "s1"]);

    // The host moves on: a commit (with the edit the box already has uncommitted), an
    // uncommitted change, a new and a changed untracked file.
    std::fs::write(repo.join("src/new.txt"), "new\n").expect("write");
    git_in(&repo, &["add", "src"]);
    git_in(&repo, &["commit", "-qm", "third"]);
    std::fs::write(repo.join(".gitignore"), "*.log\n*.tmp\n").expect("write");
    std::fs::write(repo.join("notes/new.md"), "brand new\n").expect("write");
    std::fs::write(repo.join("notes/deep/todo.md"), "untracked v2\n").expect("write");
    std::fs::write(repo.join("notes/mine.md"), "host v2\n").expect("write");
    // The box changes one of those untracked files itself.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo box version > notes/mine.md"],
    );

    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(out["report"]["merged"], true, "{out}");
    assert!(
        out["bytes_sent"]
            .as_u64()
            .is_some_and(|b| b > 0 && b < 64 * 1024),
        "{out}"
    );
    assert_eq!(
        out["kept_in_box"],
        serde_json::json!(["notes/mine.md"]),
        "{out}"
    );
    let cat = |p: &str| host.ok(&repo, &["exec", "--", "cat", p]);
    assert_eq!(
        host.ok(&repo, &["exec", "--", "git", "log", "--format=%s", "-3"]),
        "third\nsecond\nfirst\n"
    );
    assert_eq!(cat("src/new.txt"), "new\n");
    assert_eq!(cat("src/lib.txt"), "one\nedited\n");
    assert_eq!(cat(".gitignore"), "*.log\n*.tmp\n");
    assert_eq!(cat("notes/new.md"), "brand new\n");
    assert_eq!(cat("notes/deep/todo.md"), "untracked v2\n");
    assert_eq!(cat("notes/mine.md"), "box version\n");

    // Nothing new: nothing travels.
    let again: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(again["bytes_sent"], 0, "{again}");

    // Conflicting commits on both sides: the merge is left undone, the box keeps its work.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo box line > src/lib.txt && git -c user.email=b@b -c user.name=b commit -qam box && echo wip > wip.txt"],
    );
    std::fs::write(repo.join("src/lib.txt"), "host line\n").expect("write");
    git_in(&repo, &["commit", "-qam", "host"]);
    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(out["report"]["merged"], false, "{out}");
    assert!(
        out["report"]["commits"]
            .as_str()
            .is_some_and(|c| c.contains("refs/agentbox/host")),
        "{out}"
    );
    assert_eq!(cat("src/lib.txt"), "box line\n");
    assert_eq!(cat("wip.txt"), "wip\n");
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                "--",
                "git",
                "log",
                "-1",
                "--format=%s",
                "refs/agentbox/host"
            ]
        ),
        "host\n"
    );
    host.ok(&repo, &["destroy", "-y", "--force", "s1"]);
}

#[test]
fn download_shows_changes_holds_host_executed_files_and_never_writes_git() {
    let host = Host::new();
    let repo = host.repo("dlproj", "");
    host.ok(&repo, &["create", "--name", "d1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo box edit > src/lib.txt && mkdir -p out .vscode && echo made > out/new.txt \
             && echo 'rm -rf ~' > .envrc && echo '{}' > .vscode/tasks.json \
             && echo SECRET=1 > .env && echo '.env' >> .gitignore && echo x > debug.log \
             && echo hook > .git/hooks/post-checkout",
        ],
    );
    // Dry run: the list, nothing written.
    let plan: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json"])).expect("json");
    let listed: Vec<(&str, &str, bool)> = plan["plan"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or(""),
                f["change"].as_str().unwrap_or(""),
                f["host_executed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (".envrc", "new", true),
            (".gitignore", "modified", false),
            (".vscode/tasks.json", "new", true),
            ("out/new.txt", "new", false),
            ("src/lib.txt", "modified", false),
        ],
        "{plan}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("src/lib.txt")).expect("lib"),
        "one\nedited\n"
    );
    // Without a terminal, confirmation must be explicit.
    host.fails(&repo, &["download"], "pass -y");

    let done: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "-y", "--json"])).expect("json");
    assert_eq!(
        done["written"],
        serde_json::json!([".gitignore", "out/new.txt", "src/lib.txt"]),
        "{done}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("src/lib.txt")).expect("lib"),
        "box edit\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("out/new.txt")).expect("new"),
        "made\n"
    );
    assert!(
        !repo.join(".envrc").exists(),
        "a host-executed file was written"
    );
    assert!(!repo.join(".vscode/tasks.json").exists());
    assert!(
        !repo.join(".env").exists(),
        "an ignored .env came without --with-env"
    );
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&repo)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".agentbox-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging left in the project");

    // Explicit approval and --with-env bring the rest.
    host.ok(
        &repo,
        &["download", "-y", "--with-env", "--allow-host-executed"],
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".envrc")).expect("envrc"),
        "rm -rf ~\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".env")).expect("env"),
        "SECRET=1\n"
    );
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    let again: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json", "--with-env"]))
            .expect("json");
    assert_eq!(again["plan"]["files"], serde_json::json!([]), "{again}");
    // A symlink out of the tree refuses the whole download, and says what to do.
    host.ok(&repo, &["exec", "--", "ln", "-s", "/etc/passwd", "out/pw"]);
    host.fails(
        &repo,
        &["download", "-y"],
        "symlink points outside the target; change or remove that path in the box, then download again",
    );
    host.ok(&repo, &["exec", "--", "rm", "out/pw"]);
    host.ok(&repo, &["destroy", "-y", "d1"]);
}

/// Every path under `root` that resolves at all resolves inside `root`.
fn nothing_resolves_outside(root: &std::path::Path) -> Result<(), String> {
    let real_root = root.canonicalize().map_err(|e| e.to_string())?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let path = entry.path();
            if let Ok(real) = path.canonicalize() {
                if !real.starts_with(&real_root) {
                    return Err(format!("{} resolves to {}", path.display(), real.display()));
                }
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Issue 20, holes 6 and 7, end to end: a box that hides `.git` or host-executed files
/// deeper down, or builds a chain of symlinks that climbs out, gets none of it into the
/// host tree through `download`, `agentbox cp` or `cp --to-host`.
#[test]
fn hostile_trees_from_the_box_never_land_on_the_host() {
    let host = Host::new();
    let repo = host.repo("hostile", "");
    host.ok(&repo, &["create", "--name", "h1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "mkdir -p t/nested/.GIT t/.cargo t/sub \
             && printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > t/nested/.GIT/config \
             && echo '[build]' > t/.cargo/config.toml && echo 'rm -rf ~' > t/sub/.envrc \
             && echo fine > t/ok.txt",
        ],
    );
    let done: serde_json::Value = serde_json::from_str(&host.ok(
        &repo,
        &["download", "-y", "--json", "--allow-host-executed"],
    ))
    .expect("json");
    assert!(
        !repo.join("t/nested/.GIT").exists(),
        "a nested .GIT was written: {done}"
    );
    assert_eq!(
        done["plan"]["refused"],
        serde_json::json!(["t/nested/.GIT/config"]),
        "{done}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("t/ok.txt")).expect("ok"),
        "fine\n"
    );
    // Host-executed files at any depth were listed as such (and came only because asked).
    let held: Vec<&str> = done["plan"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["host_executed"] == true)
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(held, ["t/.cargo/config.toml", "t/sub/.envrc"], "{done}");
    host.ok(&repo, &["exec", "--", "rm", "-r", "t"]);
    std::fs::remove_dir_all(repo.join("t")).expect("rm");

    // x/y -> .. and z -> x/y/…/../../…/etc/passwd: inside when read lexically.
    let chain = format!("{}{}etc/passwd", "x/y/".repeat(16), "../".repeat(33));
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            &format!("mkdir -p d/x && ln -s .. d/x/y && ln -s {chain} d/z"),
        ],
    );
    let out = host.run(&repo, &["cp", "h1:d", "got"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("symlink"),
        "{stderr}"
    );
    nothing_resolves_outside(&repo).expect("agentbox cp");

    host.ok(
        &repo,
        &["config", "set", "--project", "policy.copyToHost", "allow"],
    );
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "mkdir -p u/deep/.Git u/.cargo && echo x > u/deep/.Git/config \
             && echo x > u/.cargo/config.toml",
        ],
    );
    for (src, why) in [
        ("d", "symlink"),
        ("u/deep", ".git"),
        ("u/.cargo", "run by the host"),
    ] {
        let out = host.run(
            &repo,
            &["exec", "--", "agentbox-ctl", "cp", "--to-host", src, "."],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{src}: {stderr}"
        );
    }
    nothing_resolves_outside(&repo).expect("cp --to-host");
    assert!(!repo.join("deep").exists() && !repo.join(".cargo").exists());
    host.ok(&repo, &["destroy", "-y", "--force", "h1"]);
}
