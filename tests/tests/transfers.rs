//! File transfers between the host client (`agentbox::transfer`) and a real relay: round
//! trips, resumption after a cut, corruption caught before anything lands, hostile
//! archives refused, size caps.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::Ordering;

use agentbox::transfer::client::Relay;
use agentbox::transfer::cp;
use agentbox_tests::fault_proxy::{Fault, FaultProxy};
use agentbox_tests::{spawn_relay, TEST_TOKEN};

struct TestBox {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Drop for TestBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestBox {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("ws")).expect("ws");
        let (child, port) = spawn_relay(dir.path(), env);
        Self { dir, child, port }
    }

    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    fn relay(&self) -> Relay {
        Relay::new(&format!("http://127.0.0.1:{}", self.port), TEST_TOKEN)
    }

    fn relay_via(proxy: &FaultProxy) -> Relay {
        Relay::new(&format!("http://127.0.0.1:{}", proxy.port), TEST_TOKEN)
    }

    /// Nothing of a transfer is left in the relay's staging.
    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("state/transfers"))
            .map_or(true, |mut d| d.next().is_none())
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn quiet(_: u64, _: u64) {}

fn upload(relay: &Relay, sources: &[PathBuf], dest: &str) -> anyhow::Result<Vec<String>> {
    rt().block_on(cp::upload(relay, sources, dest, &quiet))
        .map(|l| l.paths)
}

fn download(relay: &Relay, source: &str, dest: &Path, max: u64) -> anyhow::Result<Vec<PathBuf>> {
    let slash = dest.as_os_str().as_bytes().ends_with(b"/");
    rt().block_on(cp::download(relay, source, dest, slash, max, &quiet))
}

/// Every entry under `root`: relative path, kind, mode, content or link target.
fn snapshot(root: &Path) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("meta");
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mode = meta.permissions().mode() & 0o7777;
        let what = if meta.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).expect("link").display())
        } else if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("ls") {
                stack.push(e.expect("entry").path());
            }
            format!("dir {mode:o}")
        } else {
            let data = std::fs::read(&p).expect("read");
            format!(
                "file {mode:o} {} {}",
                data.len(),
                blake3::hash(&data).to_hex()
            )
        };
        out.push((rel, what));
    }
    out.sort();
    out
}

fn sample_tree(root: &Path) {
    let mk = |p: &str, data: &[u8], mode: u32| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    mk("tree/a.txt", b"alpha\n", 0o644);
    mk("tree/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    mk("tree/secret", b"s", 0o600);
    mk("tree/empty-file", b"", 0o644);
    mk("tree/deep/er/still/x", &vec![7u8; 300_000], 0o640);
    std::fs::create_dir_all(root.join("tree/empty-dir")).expect("mkdir");
    std::fs::set_permissions(
        root.join("tree/empty-dir"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    let odd = root
        .join("tree")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.bin"));
    std::fs::write(odd, b"not utf-8 name").expect("write");
    std::os::unix::fs::symlink("a.txt", root.join("tree/link-to-a")).expect("symlink");
}

#[test]
fn trees_files_modes_and_odd_names_round_trip() {
    let b = TestBox::start(&[]);
    let host = tempfile::tempdir().expect("tempdir");
    sample_tree(host.path());
    let relay = b.relay();

    // Into an existing directory: the tree keeps its name.
    std::fs::create_dir(b.ws().join("in")).expect("mkdir");
    let landed = upload(&relay, &[host.path().join("tree")], "in").expect("upload");
    assert_eq!(landed, [b.ws().join("in/tree").display().to_string()]);
    assert_eq!(
        snapshot(&host.path().join("tree")),
        snapshot(&b.ws().join("in/tree"))
    );

    // Back to a new host path: the copy is that path.
    let back = host.path().join("back");
    download(&relay, "in/tree", &back, 1 << 30).expect("download");
    assert_eq!(snapshot(&host.path().join("tree")), snapshot(&back));

    // Single files, the 0-byte one included, to a new name and into a directory.
    upload(&relay, &[host.path().join("tree/empty-file")], "zero").expect("upload");
    assert_eq!(std::fs::read(b.ws().join("zero")).expect("zero"), b"");
    upload(&relay, &[host.path().join("tree/bin/run.sh")], "in/").expect("upload");
    let mode = std::fs::metadata(b.ws().join("in/run.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let got = download(&relay, "in/run.sh", &host.path().join("got.sh"), 1 << 30).expect("dl");
    assert_eq!(got, [host.path().join("got.sh")]);
    assert_eq!(
        std::fs::read(host.path().join("got.sh")).expect("read"),
        b"#!/bin/sh\necho hi\n"
    );

    // Several sources into a directory.
    upload(
        &relay,
        &[
            host.path().join("tree/a.txt"),
            host.path().join("tree/empty-dir"),
        ],
        "in/",
    )
    .expect("upload several");
    assert!(b.ws().join("in/a.txt").is_file() && b.ws().join("in/empty-dir").is_dir());
    let err = upload(
        &relay,
        &[
            host.path().join("tree/a.txt"),
            host.path().join("tree/secret"),
        ],
        "nowhere",
    )
    .expect_err("several sources need a directory");
    assert!(err.to_string().contains("directory"), "{err}");
    assert!(!b.ws().join("nowhere").exists());
    assert!(b.staging_is_empty());
}

#[test]
fn a_two_gib_sparse_file_round_trips_and_stays_sparse() {
    const SIZE: u64 = 2 << 30;
    let b = TestBox::start(&[("AGENTBOX_MAX_UPLOAD_BYTES", "4294967296")]);
    let host = tempfile::tempdir().expect("tempdir");
    let src = host.path().join("sparse.img");
    let f = std::fs::File::create(&src).expect("create");
    f.set_len(SIZE).expect("set_len");
    std::os::unix::fs::FileExt::write_at(&f, b"middle", SIZE / 2).expect("write");
    std::os::unix::fs::FileExt::write_at(&f, b"end", SIZE - 3).expect("write");
    drop(f);
    let relay = b.relay();
    upload(&relay, std::slice::from_ref(&src), "sparse.img").expect("upload");
    let in_box = b.ws().join("sparse.img");
    let back = host.path().join("back.img");
    download(&relay, "sparse.img", &back, 4 << 30).expect("download");
    for p in [&in_box, &back] {
        let meta = std::fs::metadata(p).expect("meta");
        assert_eq!(meta.len(), SIZE);
        assert!(
            meta.blocks() * 512 < 64 << 20,
            "{} is not sparse",
            p.display()
        );
        let f = std::fs::File::open(p).expect("open");
        let mut buf = [0u8; 6];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, SIZE / 2).expect("read");
        assert_eq!(&buf, b"middle");
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf[..3], SIZE - 3).expect("read");
        assert_eq!(&buf[..3], b"end");
    }
}

fn random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    std::fs::write(path, data).expect("write");
}

#[test]
fn an_upload_cut_at_60_percent_resumes_without_resending() {
    const SIZE: usize = 48 << 20;
    let b = TestBox::start(&[]);
    let host = tempfile::tempdir().expect("tempdir");
    let src = host.path().join("data.bin");
    random_file(&src, SIZE);
    let proxy = FaultProxy::start(b.port, Fault::CutUp(SIZE as u64 * 6 / 10));
    upload(
        &TestBox::relay_via(&proxy),
        std::slice::from_ref(&src),
        "data.bin",
    )
    .expect("upload");
    assert!(proxy.fired.load(Ordering::SeqCst), "the cut never happened");
    assert_eq!(
        std::fs::read(b.ws().join("data.bin")).expect("landed"),
        std::fs::read(&src).expect("src")
    );
    let carried = proxy.up.load(Ordering::SeqCst);
    assert!(
        carried < SIZE as u64 * 12 / 10,
        "{carried} bytes went up for a {SIZE}-byte file: the first part was sent again"
    );
    assert!(b.staging_is_empty());
}

#[test]
fn a_download_cut_at_60_percent_resumes_without_refetching() {
    const SIZE: usize = 48 << 20;
    let b = TestBox::start(&[]);
    random_file(&b.ws().join("data.bin"), SIZE);
    let host = tempfile::tempdir().expect("tempdir");
    let proxy = FaultProxy::start(b.port, Fault::CutDown(SIZE as u64 * 6 / 10));
    let dest = host.path().join("data.bin");
    download(&TestBox::relay_via(&proxy), "data.bin", &dest, 1 << 30).expect("download");
    assert!(proxy.fired.load(Ordering::SeqCst), "the cut never happened");
    assert_eq!(
        std::fs::read(&dest).expect("landed"),
        std::fs::read(b.ws().join("data.bin")).expect("src")
    );
    let carried = proxy.down.load(Ordering::SeqCst);
    assert!(
        carried < SIZE as u64 * 12 / 10,
        "{carried} bytes came down for a {SIZE}-byte file: the first part was fetched again"
    );
    assert_eq!(
        std::fs::read_dir(host.path()).expect("ls").count(),
        1,
        "staging left"
    );
}

#[test]
fn a_corrupted_byte_is_caught_and_nothing_lands() {
    const SIZE: usize = 8 << 20;
    let b = TestBox::start(&[]);
    let host = tempfile::tempdir().expect("tempdir");
    let src = host.path().join("data.bin");
    random_file(&src, SIZE);
    std::fs::write(b.ws().join("data.bin"), b"the old content").expect("write");

    let up = FaultProxy::start(b.port, Fault::FlipUp(SIZE as u64 / 2));
    let err = upload(
        &TestBox::relay_via(&up),
        std::slice::from_ref(&src),
        "data.bin",
    )
    .expect_err("corrupt upload");
    assert!(up.fired.load(Ordering::SeqCst));
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read(b.ws().join("data.bin")).expect("old"),
        b"the old content"
    );
    assert!(b.staging_is_empty());

    random_file(&b.ws().join("box.bin"), SIZE);
    let down = FaultProxy::start(b.port, Fault::FlipDown(SIZE as u64 / 2));
    let dest = host.path().join("box.bin");
    let err = download(&TestBox::relay_via(&down), "box.bin", &dest, 1 << 30).expect_err("corrupt");
    assert!(down.fired.load(Ordering::SeqCst));
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(host.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("data.bin")], "staging left");
}

/// A raw tar with one entry, for the hostile cases the `tar` builder refuses to write.
fn raw_tar(path: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{:011o}", data.len());
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn hostile_archives_are_refused_and_the_target_is_unchanged() {
    let b = TestBox::start(&[]);
    std::fs::create_dir(b.ws().join("target")).expect("mkdir");
    std::fs::write(b.ws().join("target/keep"), "keep").expect("write");
    let before = snapshot(&b.ws());
    let cases: [(&str, Vec<u8>); 6] = [
        (
            "absolute path",
            raw_tar(b"/tmp/agentbox-evil", b'0', b"", b"x"),
        ),
        ("`..`", raw_tar(b"../../evil", b'0', b"", b"x")),
        (
            "symlink out",
            raw_tar(b"evil-link", b'2', b"../../../etc", b""),
        ),
        (
            "absolute symlink",
            raw_tar(b"evil-link", b'2', b"/etc/passwd", b""),
        ),
        (
            "hard link",
            raw_tar(b"evil-hard", b'1', b"/etc/passwd", b""),
        ),
        ("device", raw_tar(b"evil-dev", b'3', b"", b"")),
    ];
    let relay = b.relay();
    for (what, tar) in cases {
        let host = tempfile::tempdir().expect("tempdir");
        let path = host.path().join("evil.tar");
        std::fs::write(&path, &tar).expect("write");
        let land = agentbox_protocol::files::LandRequest {
            blake3: String::new(),
            size: 0,
            kind: agentbox_protocol::files::TransferKind::Tar,
            dest: "target".into(),
            name: None,
            mode: None,
        };
        let id = agentbox_protocol::files::new_transfer_id().expect("id");
        let err = rt()
            .block_on(relay.upload(&id, &path, land, &quiet))
            .expect_err(what);
        assert!(err.to_string().contains("refused"), "{what}: {err}");
        assert_eq!(snapshot(&b.ws()), before, "{what} changed the workspace");
        assert!(!Path::new("/tmp/agentbox-evil").exists());
    }
    assert!(b.staging_is_empty());

    // The other way: a box whose tree holds a link out is refused by the host.
    std::fs::create_dir(b.ws().join("out")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", b.ws().join("out/etc")).expect("symlink");
    let host = tempfile::tempdir().expect("tempdir");
    let err = download(&relay, "out", &host.path().join("out"), 1 << 30).expect_err("link out");
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(std::fs::read_dir(host.path()).expect("ls").count(), 0);
}

#[test]
fn size_caps_hold_both_ways_with_a_clear_error() {
    let b = TestBox::start(&[("AGENTBOX_MAX_UPLOAD_BYTES", "1000")]);
    let host = tempfile::tempdir().expect("tempdir");
    random_file(&host.path().join("big"), 5000);
    let err = upload(&b.relay(), &[host.path().join("big")], "big").expect_err("too big");
    assert!(err.to_string().contains("1000-byte limit"), "{err}");
    assert!(!b.ws().join("big").exists());
    random_file(&b.ws().join("box-big"), 5000);
    let err = download(&b.relay(), "box-big", &host.path().join("x"), 1000).expect_err("cap");
    assert!(err.to_string().contains("transfer limit"), "{err}");
    assert!(!host.path().join("x").exists());
    let err = download(&b.relay(), "no/such/file", &host.path().join("x"), 1000).expect_err("404");
    assert!(err.to_string().contains("no/such/file"), "{err}");
}
