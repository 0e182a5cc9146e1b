//! The release layout end to end: `scripts/dist` makes the tarball; unpacked into an empty
//! directory, its own `bin/agentbox` prepares a Docker image from its `lib/agentbox/` and
//! boots a box whose `agentbox-ctl` and `agentbox-relay` are static; binaries of the wrong
//! architecture, dynamically linked ones, or none at all are refused at `prepare` with a
//! sentence saying how to get the right ones.
//!
//! Needs a running Docker engine, the offline base image and the musl builds of the box
//! binaries (`scripts/test` sets all three up; `scripts/dist` builds what is missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use agentbox::image::binaries::{check, elf_facts};
use agentbox::image::BoxArch;
use agentbox_tests::bin_path;
use agentbox_tests::run::{limit_for, TimedOutput};

/// The tarball `scripts/dist` made for this run (once for all the tests here), with the
/// directory holding it.
fn tarball() -> &'static Path {
    static DIST: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIST.get_or_init(|| {
        let out = tempfile::tempdir().expect("tempdir");
        let cli = bin_path("agentbox");
        // The box binaries of the profile these tests were built with.
        let profile = match cli.parent().and_then(Path::file_name) {
            Some(p) if p == "debug" => "dev",
            _ => "release",
        };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let run = Command::new(repo.join("scripts/dist"))
            .args(["--profile", profile, "--cli"])
            .arg(&cli)
            .arg("--out")
            .arg(out.path())
            .stdin(Stdio::null())
            .timed_output()
            .expect("run scripts/dist");
        let printed = agentbox_tests::succeeded(&["scripts/dist"], &run);
        let path = PathBuf::from(printed.trim());
        assert!(path.is_file(), "scripts/dist printed {printed:?}");
        assert!(path.starts_with(out.path()), "{}", path.display());
        (out, path)
    });
    path
}

/// The tarball unpacked into the empty directory `into`; returns the release's root.
fn unpack(into: &Path) -> PathBuf {
    assert_eq!(std::fs::read_dir(into).expect("dir").count(), 0);
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(tarball())
        .arg("-C")
        .arg(into)
        .timed_output()
        .expect("tar");
    assert!(out.status.success(), "{out:?}");
    let mut tops: Vec<PathBuf> = std::fs::read_dir(into)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(tops.len(), 1, "one top directory: {tops:?}");
    tops.remove(0)
}

/// The architecture of the Docker engine's boxes.
fn engine_arch() -> BoxArch {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Arch}}"])
        .timed_output()
        .expect("docker version");
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    BoxArch::from_engine(&arch).unwrap_or_else(|| panic!("an engine on {arch:?}"))
}

/// A project repository with one commit.
fn project(dir: &Path) -> PathBuf {
    let repo = dir.join("proj");
    std::fs::create_dir_all(&repo).expect("mkdir");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["config", "user.email", "t@example.com"],
        &["config", "user.name", "T"],
    ] {
        assert!(Command::new("git")
            .args(args)
            .current_dir(&repo)
            .status()
            .expect("git")
            .success());
    }
    std::fs::write(repo.join("a.txt"), "hello\n").expect("write");
    for args in [&["add", "."][..], &["commit", "-qm", "first"]] {
        assert!(Command::new("git")
            .args(args)
            .current_dir(&repo)
            .status()
            .expect("git")
            .success());
    }
    repo
}

/// Runs an unpacked release's `bin/agentbox` with `home` as `AGENTBOX_HOME`, and none of
/// the variables that would point it at other box binaries.
fn agentbox(root: &Path, home: &Path, cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(root.join("bin/agentbox"))
        .args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", home)
        .env_remove("AGENTBOX_BOX_BIN_DIR")
        .env_remove("AGENTBOX_BOX_BINARIES")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output_within(limit_for(args))
        .expect("run the release's agentbox")
}

fn prepare_args(base: &str) -> [&str; 7] {
    [
        "prepare",
        "--provider",
        "docker",
        "--base-image",
        base,
        "--agents",
        "none",
    ]
}

/// Removes the containers and the bridge of one `AGENTBOX_HOME`, whatever happened.
struct Cleanup {
    root: PathBuf,
    home: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(self.root.join("bin/agentbox"))
            .args(["bridge", "stop"])
            .env("AGENTBOX_HOME", &self.home)
            .timed_output();
        let label = format!(
            "label=agentbox.home={}",
            agentbox::provider::docker::home_label(&self.home)
        );
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .timed_output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v", id])
                    .timed_output();
            }
        }
    }
}

#[test]
fn the_tarball_holds_the_cli_and_static_box_binaries_for_both_architectures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unpack(dir.path());
    let name = root
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("agentbox-{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    assert!(root.join("bin/agentbox").is_file());
    for arch in BoxArch::ALL {
        for bin in ["agentbox-ctl", "agentbox-relay"] {
            let path = root.join("lib/agentbox").join(arch.target()).join(bin);
            check(&path, arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    // Every file is in the checksum file, and each checks.
    let sums = std::fs::read_to_string(root.join("SHA256SUMS")).expect("SHA256SUMS");
    assert_eq!(sums.lines().count(), 5, "{sums}");
    let verified = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&root)
        .timed_output()
        .expect("sha256sum");
    assert!(verified.status.success(), "{verified:?}");
    // A file changed after packing is caught.
    std::fs::write(root.join("bin/agentbox"), b"tampered").expect("write");
    let tampered = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&root)
        .timed_output()
        .expect("sha256sum");
    assert!(!tampered.status.success());
}

#[test]
fn an_unpacked_release_prepares_and_boots_a_docker_box_with_static_binaries() {
    let base = agentbox_tests::docker_base_image();
    let arch = engine_arch();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("release")).expect("mkdir");
    let root = unpack(&dir.path().join("release"));
    // Reached through a symlink, as with `ln -s …/bin/agentbox ~/.local/bin/`.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::os::unix::fs::symlink(root.join("bin/agentbox"), bin.join("agentbox")).expect("link");
    let home = dir.path().join("home");
    let repo = project(dir.path());
    let _cleanup = Cleanup {
        root: root.clone(),
        home: home.clone(),
    };

    let prepared = agentbox(dir.path(), &home, &repo, &prepare_args(&base), &[]);
    let tag = agentbox_tests::succeeded(&prepare_args(&base), &prepared);
    let tag = tag.trim();
    assert!(tag.starts_with("agentbox-box:"), "{tag}");
    let size = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .timed_output()
        .expect("docker image inspect");
    eprintln!(
        "image {tag} from the release's static binaries: {} bytes",
        String::from_utf8_lossy(&size.stdout).trim()
    );

    let name = format!("dist{}", std::process::id());
    let create = ["create", "--provider", "docker", "--name", name.as_str()];
    let created = agentbox(dir.path(), &home, &repo, &create, &[]);
    agentbox_tests::succeeded(&create, &created);
    let status = ["exec", name.as_str(), "--", "agentbox-ctl", "status"];
    let ran = agentbox(dir.path(), &home, &repo, &status, &[]);
    let listing = agentbox_tests::succeeded(&status, &ran);
    assert!(listing.contains("agentbox-relay"), "{listing}");

    // The files in the running box: static, for the engine's architecture.
    let filter_home = format!(
        "label=agentbox.home={}",
        agentbox::provider::docker::home_label(&home)
    );
    let filter_box = format!("label=agentbox.box={name}");
    let ps = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &filter_home,
            "--filter",
            &filter_box,
        ])
        .timed_output()
        .expect("docker ps");
    let container = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(!container.is_empty(), "no running container of box {name}");
    for bin in ["agentbox-ctl", "agentbox-relay"] {
        let read = Command::new("docker")
            .args(["exec", &container, "head", "-c", "16384"])
            .arg(format!("/usr/local/bin/{bin}"))
            .timed_output()
            .expect("docker exec");
        assert!(read.status.success(), "{read:?}");
        let facts = elf_facts(&read.stdout).unwrap_or_else(|e| panic!("{bin} {e}"));
        assert_eq!(facts.machine, arch.elf_machine(), "{bin}");
        assert_eq!(
            facts.interpreter, None,
            "{bin} in the box is dynamically linked"
        );
        // The very bytes the release carries.
        let shipped =
            std::fs::read(root.join("lib/agentbox").join(arch.target()).join(bin)).expect("read");
        assert_eq!(read.stdout[..], shipped[..16384], "{bin}");
    }

    let destroy = ["destroy", name.as_str(), "-y"];
    let gone = agentbox(dir.path(), &home, &repo, &destroy, &[]);
    agentbox_tests::succeeded(&destroy, &gone);
}

#[test]
fn box_binaries_of_another_architecture_dynamic_ones_or_none_are_refused_at_prepare() {
    let base = agentbox_tests::docker_base_image();
    let arch = engine_arch();
    let other = BoxArch::ALL
        .into_iter()
        .find(|a| *a != arch)
        .expect("two architectures");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("release")).expect("mkdir");
    let root = unpack(&dir.path().join("release"));
    let home = dir.path().join("home");
    let repo = project(dir.path());
    let lib = root.join("lib/agentbox");

    // The engine's directory holding the other architecture's binaries.
    std::fs::remove_dir_all(lib.join(arch.target())).expect("rm");
    let mut copy = Command::new("cp");
    copy.arg("-r")
        .arg(lib.join(other.target()))
        .arg(lib.join(arch.target()));
    assert!(copy.status().expect("cp").success());
    let refused = agentbox(&root, &home, &repo, &prepare_args(&base), &[]);
    assert!(!refused.status.success(), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    let wrong = format!(
        "{} is built for {other}, not {arch}",
        lib.join(arch.target()).join("agentbox-ctl").display()
    );
    assert!(why.contains(&wrong), "{why}");
    assert!(
        why.contains(&format!(
            "lib/agentbox/{}/ beside bin/agentbox",
            arch.target()
        )) && why.contains(&format!("scripts/box-binaries --release {arch}")),
        "the refusal says how to get them: {why}"
    );

    // None at all: this release's directory gone, and its bin/ holds no box binaries.
    std::fs::remove_dir_all(lib.join(arch.target())).expect("rm");
    let none = agentbox(&root, &home, &repo, &prepare_args(&base), &[]);
    assert!(!none.status.success(), "{none:?}");
    let why = String::from_utf8_lossy(&none.stderr);
    assert!(
        why.contains(&format!(
            "no static agentbox-ctl and agentbox-relay for {arch} boxes"
        )) && why.contains("AGENTBOX_BOX_BINARIES"),
        "{why}"
    );

    // Named explicitly: the host's own build of the workspace, linked against its libc.
    let host_build = bin_path("agentbox-ctl");
    let host_dir = host_build.parent().expect("dir");
    let dynamic = agentbox(
        &root,
        &home,
        &repo,
        &prepare_args(&base),
        &[("AGENTBOX_BOX_BINARIES", host_dir)],
    );
    assert!(!dynamic.status.success(), "{dynamic:?}");
    let why = String::from_utf8_lossy(&dynamic.stderr);
    assert!(
        why.contains("AGENTBOX_BOX_BINARIES holds no box binaries")
            && why.contains("is dynamically linked"),
        "{why}"
    );
}

#[test]
fn an_unpacked_release_runs_a_local_box_on_its_own_static_binaries() {
    let arch = BoxArch::host().expect("the local provider runs on x86_64 or aarch64 Linux");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("release")).expect("mkdir");
    let root = unpack(&dir.path().join("release"));
    let home = dir.path().join("home");
    let repo = project(dir.path());
    let _cleanup = Cleanup {
        root: root.clone(),
        home: home.clone(),
    };
    let name = format!("distlocal{}", std::process::id());
    let create = ["create", "--provider", "local", "--name", name.as_str()];
    let created = agentbox(&root, &home, &repo, &create, &[]);
    agentbox_tests::succeeded(&create, &created);
    // The box's agentbox-ctl is the release's, from lib/ (bin/ holds only the CLI).
    let which = [
        "exec",
        name.as_str(),
        "--",
        "sh",
        "-c",
        "readlink -f \"$(command -v agentbox-ctl)\" && agentbox-ctl status",
    ];
    let ran = agentbox(&root, &home, &repo, &which, &[]);
    let said = agentbox_tests::succeeded(&which, &ran);
    let shipped = std::fs::canonicalize(
        root.join("lib/agentbox")
            .join(arch.target())
            .join("agentbox-ctl"),
    )
    .expect("canonical");
    assert_eq!(
        said.lines().next(),
        Some(shipped.to_str().expect("utf-8")),
        "{said}"
    );
    assert!(said.contains("agentbox-relay"), "{said}");
    let destroy = ["destroy", name.as_str(), "-y"];
    let gone = agentbox(&root, &home, &repo, &destroy, &[]);
    agentbox_tests::succeeded(&destroy, &gone);
}
