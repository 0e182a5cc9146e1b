//! Who listens on a TCP port of this machine (Linux `/proc`): the listening sockets of
//! `/proc/net/tcp` and `tcp6`, and the processes holding them. Local boxes share the
//! machine's ports with each other and with everything else on it, so the box's readiness
//! probes (`agentbox-ctl`) and `agentbox url` (the host) ask whose listener answers, not
//! only whether something does.
//!
//! Everything read here is what the kernel reports; a process of another user is simply
//! not seen (its file descriptors cannot be read).

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The socket inodes of the listening TCP sockets on `port` in a `/proc/net/tcp` or
/// `/proc/net/tcp6` table (any local address: `0.0.0.0`, `127.0.0.1`, `::`, …). Lines
/// that do not parse are skipped.
pub fn parse_listening(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let listening = *state == "0A";
            (listening && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| inode.parse().ok())
                .flatten()
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// The inodes of the sockets listening on `port` in this network namespace; `None` when
/// `/proc/net` cannot be read (not Linux, or no `/proc`).
pub fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            read_any = true;
            found.extend(parse_listening(&text, port));
        }
    }
    read_any.then_some(found)
}

/// The socket inode a `/proc/PID/fd/N` link names (`socket:[12345]`).
fn socket_inode(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let text = target.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether process `pid` holds one of `inodes` open (as far as its descriptors can be read).
pub fn holds_any<S: std::hash::BuildHasher>(pid: u32, inodes: &HashSet<u64, S>) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .filter_map(|e| socket_inode(&e.path()))
        .any(|inode| inodes.contains(&inode))
}

/// Every process of this machine (that `/proc` shows) with its parent.
fn parents() -> HashMap<u32, u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The name in parentheses can hold anything: the fields start after the last `)`.
            let rest = stat.rsplit_once(')')?.1;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// `root` and every process descending from it.
pub fn tree_of(root: u32) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in parents() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut tree = HashSet::from([root]);
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for c in children.get(&p).into_iter().flatten() {
            if tree.insert(*c) {
                todo.push(*c);
            }
        }
    }
    tree
}

/// The processes (of those whose descriptors can be read) holding a socket that listens on
/// `port`; `None` when `/proc/net` cannot be read.
pub fn holders(port: u16) -> Option<Vec<u32>> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Some(Vec::new());
    }
    let mut pids: Vec<u32> = parents()
        .into_keys()
        .filter(|pid| holds_any(*pid, &inodes))
        .collect();
    pids.sort_unstable();
    Some(pids)
}

/// The value of `name` in process `pid`'s environment, if it can be read.
pub fn env_of(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    env.split(|b| *b == 0)
        .find_map(|e| e.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A process's command name (`/proc/PID/comm`), for messages.
pub fn command_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6666 1 0000000000000000 100 0 0 10 0
   garbage line
";

    #[test]
    fn listening_sockets_of_a_port_only() {
        // 0x1F40 = 8000; the established connection (01) and port 8001 are not listeners of it.
        assert_eq!(parse_listening(TABLE, 8000), vec![4242, 4343]);
        assert_eq!(parse_listening(TABLE, 8001), vec![6666]);
        assert!(parse_listening(TABLE, 9).is_empty());
        assert!(parse_listening("", 8000).is_empty());
    }

    #[test]
    fn a_listener_of_this_process_is_found_in_its_tree_and_its_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = std::process::id();
        let inodes = listening_inodes(port).expect("/proc/net");
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert!(holds_any(me, &inodes));
        assert!(tree_of(1).contains(&me));
        assert!(!tree_of(me).contains(&1));
        assert_eq!(holders(port), Some(vec![me]));
        drop(l);
        assert_eq!(holders(port), Some(Vec::new()));
    }
}
