//! The CPU architecture of a box, and which one each provider's boxes have: Daytona
//! sandboxes are x86_64, a Docker engine says its own (`docker version`'s `Arch`).

use anyhow::Context;

/// The architecture of a (Linux) box, which decides the box binaries baked into its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxArch {
    /// x86-64 (`amd64`).
    X86_64,
    /// 64-bit ARM (`arm64`).
    Aarch64,
}

impl BoxArch {
    /// Both, in the order a release lists them.
    pub const ALL: [BoxArch; 2] = [BoxArch::X86_64, BoxArch::Aarch64];

    /// `x86_64` or `aarch64`, as `uname -m` says.
    pub fn name(self) -> &'static str {
        match self {
            BoxArch::X86_64 => "x86_64",
            BoxArch::Aarch64 => "aarch64",
        }
    }

    /// The Rust target the box binaries are built for: static musl Linux.
    pub fn target(self) -> &'static str {
        match self {
            BoxArch::X86_64 => "x86_64-unknown-linux-musl",
            BoxArch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The ELF `e_machine` of its executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            BoxArch::X86_64 => 62,
            BoxArch::Aarch64 => 183,
        }
    }

    /// The architecture an ELF `e_machine` names, if it is one boxes can have.
    pub fn from_elf_machine(machine: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.elf_machine() == machine)
    }

    /// The architecture a Docker engine reports (`amd64`, `arm64`; `x86_64` and `aarch64`
    /// too, as `docker info` says them).
    pub fn from_engine(arch: &str) -> Option<Self> {
        match arch {
            "amd64" | "x86_64" => Some(BoxArch::X86_64),
            "arm64" | "aarch64" => Some(BoxArch::Aarch64),
            _ => None,
        }
    }

    /// This machine's, when it is a Linux machine boxes could run on.
    pub fn host() -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        match std::env::consts::ARCH {
            "x86_64" => Some(BoxArch::X86_64),
            "aarch64" => Some(BoxArch::Aarch64),
            _ => None,
        }
    }

    /// The architecture of `provider`'s boxes: Daytona's are x86_64; a Docker engine is
    /// asked.
    pub fn of_provider(provider: &str) -> anyhow::Result<Self> {
        match provider {
            "daytona" => Ok(BoxArch::X86_64),
            "docker" => docker_engine(),
            other => anyhow::bail!("`{other}` boxes have no image of their own"),
        }
    }
}

impl std::fmt::Display for BoxArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The architecture of the Docker engine `prepare` builds on.
fn docker_engine() -> anyhow::Result<BoxArch> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let version = rt
        .block_on(async {
            bollard::Docker::connect_with_local_defaults()?
                .version()
                .await
        })
        .context("cannot reach the Docker engine (is dockerd running? `docker info` tells)")?;
    let arch = version.arch.unwrap_or_default();
    BoxArch::from_engine(&arch).with_context(|| {
        format!(
            "the Docker engine runs on `{}`: boxes run on x86_64 (amd64) or aarch64 (arm64) only",
            crate::text::shown(&crate::text::clean_text(&arch, 40))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::BoxArch;

    #[test]
    fn engine_and_elf_names_map_to_the_same_architectures() {
        assert_eq!(BoxArch::from_engine("amd64"), Some(BoxArch::X86_64));
        assert_eq!(BoxArch::from_engine("arm64"), Some(BoxArch::Aarch64));
        assert_eq!(BoxArch::from_engine("aarch64"), Some(BoxArch::Aarch64));
        assert_eq!(BoxArch::from_engine("s390x"), None);
        for arch in BoxArch::ALL {
            assert_eq!(BoxArch::from_elf_machine(arch.elf_machine()), Some(arch));
            assert!(arch.target().starts_with(arch.name()));
        }
        assert_eq!(
            BoxArch::from_elf_machine(40),
            None,
            "32-bit ARM is not a box"
        );
        // Daytona's sandboxes are x86_64 whatever this host is; a local box has no image.
        assert_eq!(
            BoxArch::of_provider("daytona").expect("daytona"),
            BoxArch::X86_64
        );
        assert!(BoxArch::of_provider("local").is_err());
    }
}
