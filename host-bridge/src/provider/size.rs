//! A box's size, `--size CPU-MEM-DISK` / `box.size` / `box.sizeDaytona` ([`Size`]): what
//! the docker provider gives the container, and the resources Daytona gives a snapshot
//! (`prepare --provider daytona --size`) and a sandbox (default [`Size::DAYTONA_DEFAULT`]).

/// `CPU-MEM-DISK` (e.g. `2-4-8`: 2 CPUs, 4 GiB memory, 8 GiB disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// CPUs.
    pub cpus: u32,
    /// Memory in GiB.
    pub mem_gib: u32,
    /// Disk in GiB (not enforced by Docker's default storage driver).
    pub disk_gib: u32,
}

impl Size {
    /// A Daytona box's size when none is configured: 2 vCPU, 4 GB memory, 8 GB disk.
    pub const DAYTONA_DEFAULT: Self = Self {
        cpus: 2,
        mem_gib: 4,
        disk_gib: 8,
    };

    /// `(cpu, memory, disk)`.
    pub fn triple(self) -> (u32, u32, u32) {
        (self.cpus, self.mem_gib, self.disk_gib)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.cpus, self.mem_gib, self.disk_gib)
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<u32> = s
            .split('-')
            .map(|p| p.parse::<u32>().map_err(|_| ()))
            .collect::<Result<_, _>>()
            .map_err(|()| format!("`{s}` is not CPU-MEM-DISK (e.g. 2-4-8)"))?;
        match parts[..] {
            [cpus, mem_gib, disk_gib] if cpus > 0 && mem_gib > 0 => Ok(Self {
                cpus,
                mem_gib,
                disk_gib,
            }),
            _ => Err(format!("`{s}` is not CPU-MEM-DISK (e.g. 2-4-8)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "2-4-8".parse::<Size>(),
            Ok(Size {
                cpus: 2,
                mem_gib: 4,
                disk_gib: 8
            })
        );
        assert_eq!(Size::DAYTONA_DEFAULT.to_string(), "2-4-8");
        assert_eq!("4-8-20".parse::<Size>().map(Size::triple), Ok((4, 8, 20)));
        for bad in ["2-4", "0-4-8", "a-b-c", "", "2-4-8-1"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
