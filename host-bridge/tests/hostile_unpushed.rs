//! What a box says of its unpushed commits (`agentbox-ctl unpushed`, read by `agentbox
//! destroy` before it deletes the box) cannot hide them or hang the host: ids the box
//! repeats count once, and any number of ids is answered.

mod common;

use std::time::Duration;

use common::git_in as git;

#[test]
fn a_box_cannot_hide_unpushed_commits_behind_copies_or_hang_the_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    git(
        repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "one",
        ],
    );
    let held = std::fs::read_to_string(repo.join(".git/refs/heads/main"))
        .expect("main")
        .trim()
        .to_string();
    // The box claims 3 unpushed commits and names the host's own commit three times
    // (also in capitals), then 40 000 commits nobody has.
    let mut ids: Vec<String> = vec![held.clone(), held.clone(), held.to_uppercase()];
    ids.extend((0..40_000u32).map(|i| format!("{i:040x}")));
    let repo_path = repo.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let _ = tx.send(
            agentbox::unsaved::commits_host_has(&repo_path, &refs).map_err(|e| e.to_string()),
        );
    });
    let counted = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the count of a box's 40 003 ids did not end within 60 s");
    assert_eq!(
        counted,
        Ok(1),
        "the host holds one of the box's commits, however often the box names it"
    );
}
