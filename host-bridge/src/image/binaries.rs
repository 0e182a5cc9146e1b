//! The box binaries an image carries: `agentbox-ctl` and `agentbox-relay` as static Linux
//! executables of the box's architecture, never whatever this host happens to run.
//!
//! Where they are looked for, in order:
//! 1. `AGENTBOX_BOX_BINARIES=DIR`: `DIR/<target>/` or `DIR/` itself, and nowhere else;
//! 2. a release: `lib/agentbox/<target>/` beside the `bin/` of this executable (resolved
//!    through symlinks);
//! 3. a cargo build tree: `<target dir>/<target>/<profile>/`, this executable's profile
//!    first;
//! 4. this host's own box binaries (those the local provider runs), when they are static
//!    and of the box's architecture.
//!
//! Each candidate is checked from its ELF header: the machine must be the box's and there
//! must be no program interpreter (`PT_INTERP`), i.e. the file is statically linked.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::arch::BoxArch;

/// The names of the box binaries.
pub const NAMES: [&str; 2] = ["agentbox-ctl", "agentbox-relay"];

/// The environment variable naming a directory of box binaries.
pub const ENV_DIR: &str = "AGENTBOX_BOX_BINARIES";

/// Why a file is not a static Linux executable of the wanted architecture.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    /// It could not be read.
    #[error("cannot be read ({0})")]
    Unreadable(#[from] std::io::Error),
    /// It is no 64-bit little-endian ELF file.
    #[error("is not a 64-bit little-endian ELF executable")]
    NotElf,
    /// It is for another machine.
    #[error("is built for {found}, not {wanted}")]
    WrongArch {
        /// What its header says (an architecture or an ELF machine number).
        found: String,
        /// The box's.
        wanted: BoxArch,
    },
    /// It needs a dynamic loader (and the host's C library).
    #[error("is dynamically linked (it needs {0}), and a box may not have that")]
    Dynamic(String),
}

/// What the ELF header of an executable says about where it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    /// `e_machine`.
    pub machine: u16,
    /// The program interpreter (`PT_INTERP`), when it has one: it is dynamically linked.
    pub interpreter: Option<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Reads the facts of a 64-bit little-endian ELF file from its first bytes (the header,
/// the program headers and the interpreter's name must lie within them).
pub fn elf_facts(bytes: &[u8]) -> Result<ElfFacts, Unfit> {
    const PT_INTERP: u32 = 3;
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(Unfit::NotElf);
    }
    let machine = u16_at(bytes, 18).ok_or(Unfit::NotElf)?;
    let phoff = u64_at(bytes, 32).ok_or(Unfit::NotElf)?;
    let phentsize = u16_at(bytes, 54).ok_or(Unfit::NotElf)?;
    let phnum = u16_at(bytes, 56).ok_or(Unfit::NotElf)?;
    if phentsize < 56 {
        return Err(Unfit::NotElf);
    }
    let phoff = usize::try_from(phoff).map_err(|_| Unfit::NotElf)?;
    let mut interpreter = None;
    for i in 0..usize::from(phnum) {
        let at = phoff
            .checked_add(i.checked_mul(usize::from(phentsize)).ok_or(Unfit::NotElf)?)
            .ok_or(Unfit::NotElf)?;
        if u32_at(bytes, at).ok_or(Unfit::NotElf)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(bytes, at.saturating_add(8)).ok_or(Unfit::NotElf)?;
        let size = u64_at(bytes, at.saturating_add(32)).ok_or(Unfit::NotElf)?;
        let name = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, s)| bytes.get(o..o.checked_add(s)?))
            .map_or_else(
                || "a program interpreter".to_string(),
                |n| {
                    let n = String::from_utf8_lossy(n);
                    crate::text::shown(n.trim_end_matches('\0'))
                },
            );
        interpreter = Some(name);
    }
    Ok(ElfFacts {
        machine,
        interpreter,
    })
}

/// Whether the file at `path` is a static Linux executable for `arch`.
pub fn check(path: &Path, arch: BoxArch) -> Result<(), Unfit> {
    // The header, program headers and interpreter name of any executable we build are in
    // the first pages.
    let mut head = Vec::with_capacity(16 * 1024);
    std::fs::File::open(path)?
        .take(16 * 1024)
        .read_to_end(&mut head)?;
    let facts = elf_facts(&head)?;
    if facts.machine != arch.elf_machine() {
        let found = BoxArch::from_elf_machine(facts.machine).map_or_else(
            || format!("ELF machine {}", facts.machine),
            |a| a.name().to_string(),
        );
        return Err(Unfit::WrongArch {
            found,
            wanted: arch,
        });
    }
    match facts.interpreter {
        Some(interp) => Err(Unfit::Dynamic(interp)),
        None => Ok(()),
    }
}

/// A checked pair of box binaries.
#[derive(Debug, Clone)]
pub struct BoxBinaries {
    /// `agentbox-ctl`.
    pub ctl: PathBuf,
    /// `agentbox-relay`.
    pub relay: PathBuf,
}

/// What was found in one candidate directory.
enum Probe {
    Fit(BoxBinaries),
    /// Neither or only one of the files is there.
    Absent,
    /// They are there but cannot go into a box; says why.
    Unfit(String),
}

fn probe(dir: &Path, arch: BoxArch) -> Probe {
    let [ctl, relay] = NAMES.map(|n| dir.join(n));
    if !ctl.is_file() || !relay.is_file() {
        return Probe::Absent;
    }
    for bin in [&ctl, &relay] {
        if let Err(why) = check(bin, arch) {
            return Probe::Unfit(format!("{} {why}", bin.display()));
        }
    }
    Probe::Fit(BoxBinaries { ctl, relay })
}

/// The directories to look in without `AGENTBOX_BOX_BINARIES`, for an executable at `exe`
/// (resolved) whose own box binaries (the local provider's) are in `own`.
pub fn candidates(exe: &Path, own: Option<&Path>, arch: BoxArch) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let exe_dir = exe.parent().unwrap_or(Path::new("/"));
    if let Some(prefix) = exe_dir.parent() {
        // A release: <prefix>/bin/agentbox and <prefix>/lib/agentbox/<target>/.
        dirs.push(prefix.join("lib/agentbox").join(arch.target()));
        // A cargo build tree: <target dir>/<profile>/agentbox and
        // <target dir>/<target>/<profile>/.
        if let Some(profile) = exe_dir.file_name() {
            let tree = prefix.join(arch.target());
            for p in [profile, "release".as_ref(), "debug".as_ref()] {
                let dir = tree.join(p);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    if let Some(own) = own {
        if BoxArch::host() == Some(arch) && !dirs.iter().any(|d| d == own) {
            dirs.push(own.to_path_buf());
        }
    }
    dirs
}

/// How to get box binaries for `arch`, for the refusal.
fn how_to_get(arch: BoxArch) -> String {
    format!(
        "Get them from a release of agentbox (lib/agentbox/{target}/ beside bin/agentbox), \
         or build them in the agentbox source with `scripts/box-binaries --release {arch}`, \
         or set {ENV_DIR} to a directory holding them",
        target = arch.target(),
    )
}

/// Finds static box binaries for `arch` (see the module's documentation for where), or
/// says what was wrong with what was found and how to get them.
pub fn find(arch: BoxArch) -> anyhow::Result<BoxBinaries> {
    if let Some(dir) = std::env::var_os(ENV_DIR).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        for d in [dir.join(arch.target()), dir.clone()] {
            match probe(&d, arch) {
                Probe::Fit(b) => return Ok(b),
                Probe::Unfit(why) => anyhow::bail!(
                    "{ENV_DIR} holds no box binaries for {arch} boxes: {why}. {}",
                    how_to_get(arch)
                ),
                Probe::Absent => {}
            }
        }
        anyhow::bail!(
            "{ENV_DIR}={} holds no agentbox-ctl and agentbox-relay (nor does its {} directory). {}",
            dir.display(),
            arch.target(),
            how_to_get(arch)
        );
    }
    let exe = std::env::current_exe()?;
    // Through symlinks: `~/.local/bin/agentbox` may point into an unpacked release.
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let own = crate::provider::local::box_binaries()
        .ok()
        .and_then(|(ctl, _)| ctl.parent().map(Path::to_path_buf));
    let dirs = candidates(&exe, own.as_deref(), arch);
    let mut unfit = Vec::new();
    for dir in &dirs {
        match probe(dir, arch) {
            Probe::Fit(b) => return Ok(b),
            Probe::Unfit(why) => unfit.push(why),
            Probe::Absent => {}
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut text = format!(
        "no static agentbox-ctl and agentbox-relay for {arch} boxes (looked in {})",
        looked.join(", ")
    );
    for why in unfit {
        text.push_str("; ");
        text.push_str(&why);
    }
    anyhow::bail!("{text}. {}", how_to_get(arch))
}

#[cfg(test)]
mod tests {
    use super::{check, elf_facts, BoxArch, Unfit};

    /// A minimal ELF64 header with one program header of type `ptype` (3 = PT_INTERP,
    /// pointing at `/lib/ld.so`).
    fn elf(machine: u16, ptype: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 + 16];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&ptype.to_le_bytes());
        b[72..80].copy_from_slice(&120u64.to_le_bytes());
        b[96..104].copy_from_slice(&11u64.to_le_bytes());
        b[120..131].copy_from_slice(b"/lib/ld.so\0");
        b
    }

    #[test]
    fn the_header_tells_the_machine_and_whether_it_needs_a_loader() {
        let stat = elf_facts(&elf(62, 1)).expect("static");
        assert_eq!((stat.machine, stat.interpreter), (62, None));
        let dynamic = elf_facts(&elf(183, 3)).expect("dynamic");
        assert_eq!(dynamic.machine, 183);
        assert_eq!(dynamic.interpreter.as_deref(), Some("/lib/ld.so"));
        assert!(matches!(elf_facts(b"#!/bin/sh\n"), Err(Unfit::NotElf)));
        // Program headers past the end of what was read: refused, no panic.
        let mut cut = elf(62, 1);
        cut[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(elf_facts(&cut), Err(Unfit::NotElf)));
        assert!(matches!(elf_facts(&elf(62, 1)[..60]), Err(Unfit::NotElf)));
    }

    #[test]
    fn a_binary_of_another_machine_or_a_dynamic_one_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let arm = dir.path().join("arm");
        std::fs::write(&arm, elf(183, 1)).expect("write");
        let err = check(&arm, BoxArch::X86_64).expect_err("wrong arch");
        assert_eq!(err.to_string(), "is built for aarch64, not x86_64");
        check(&arm, BoxArch::Aarch64).expect("a static aarch64 binary fits");
        // This test executable is linked against the host's C library.
        let me = std::env::current_exe().expect("exe");
        if let Some(arch) = BoxArch::host() {
            let err = check(&me, arch).expect_err("dynamic");
            assert!(err.to_string().contains("dynamically linked"), "{err}");
        }
    }

    #[test]
    fn a_release_is_looked_in_before_a_build_tree_and_the_hosts_own_last() {
        let arch = BoxArch::Aarch64;
        let dirs = super::candidates(
            std::path::Path::new("/opt/agentbox/bin/agentbox"),
            Some(std::path::Path::new("/opt/agentbox/bin")),
            arch,
        );
        assert_eq!(
            dirs[0],
            std::path::Path::new("/opt/agentbox/lib/agentbox/aarch64-unknown-linux-musl")
        );
        let tree = super::candidates(
            std::path::Path::new("/t/debug/agentbox"),
            Some(std::path::Path::new("/t/debug")),
            BoxArch::X86_64,
        );
        let expected: Vec<std::path::PathBuf> = [
            "/t/lib/agentbox/x86_64-unknown-linux-musl",
            "/t/x86_64-unknown-linux-musl/debug",
            "/t/x86_64-unknown-linux-musl/release",
        ]
        .map(std::path::PathBuf::from)
        .to_vec();
        assert_eq!(tree[..3], expected[..]);
        // The host's own come last, and only when they could be the box's architecture.
        let own_listed = tree.len() == 4 && tree[3] == std::path::Path::new("/t/debug");
        assert_eq!(own_listed, BoxArch::host() == Some(BoxArch::X86_64));
    }
}
