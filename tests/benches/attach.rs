//! Attach through the relay (issue #10) against `docker exec -it … tmux attach` on the same
//! box: keystroke-to-echo latency (p50, p99) and the time to print 100 MB in the session.
//! Both clients run in a PTY here and view the same tmux session, so tmux's own cost is in
//! both; the difference is the path (relay + WebSocket vs docker exec).
//!
//! Run through `scripts/bench-attach`, which builds the release binaries, creates a docker
//! box and sets `BENCH_BOX`, `BENCH_CONTAINER` and `AGENTBOX_HOME`. Prints JSON lines.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize};

const KEYS: usize = 400;
const FLOOD_RUNS: usize = 3;

struct Client {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    output: mpsc::Receiver<Vec<u8>>,
}

impl Client {
    fn start(argv: &[String]) -> Self {
        let pty = portable_pty::native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut command = CommandBuilder::new(&argv[0]);
        command.args(&argv[1..]);
        command.env("TERM", "xterm-256color");
        for key in ["AGENTBOX_HOME", "PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                command.env(key, v);
            }
        }
        let child = pty.slave.spawn_command(command).expect("spawn");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let writer = pty.master.take_writer().expect("writer");
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let _master = pty.master;
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            writer,
            output,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
        self.writer.flush().expect("flush");
    }

    /// Reads until `quiet` passes with no output.
    fn drain(&self, quiet: Duration) {
        while self.output.recv_timeout(quiet).is_ok() {}
    }

    /// Waits until `needle` shows in the printable text of the output (escape sequences
    /// skipped); returns the bytes read meanwhile.
    fn wait_text(&self, needle: &[u8], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut text = Text::default();
        let mut bytes = 0u64;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = self
                .output
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{:?} never showed", String::from_utf8_lossy(needle)));
            bytes += chunk.len() as u64;
            if text.feed(&chunk, needle) {
                return bytes;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The printable bytes of a terminal stream, with CSI/OSC sequences skipped, searched for
/// a needle across chunk boundaries.
#[derive(Default)]
struct Text {
    state: u8,
    tail: Vec<u8>,
}

impl Text {
    fn feed(&mut self, chunk: &[u8], needle: &[u8]) -> bool {
        for &b in chunk {
            match (self.state, b) {
                (0 | 3, 0x1b) => self.state = 1,
                (0, b) if b >= 0x20 && b != 0x7f => {
                    self.tail.push(b);
                    if self.tail.len() > needle.len() {
                        self.tail.remove(0);
                    }
                    if self.tail == needle {
                        return true;
                    }
                }
                (1, b'[') => self.state = 2,
                (1, b']') => self.state = 3,
                (1, _) | (2, 0x40..=0x7e) | (3, 0x07) => self.state = 0,
                _ => {}
            }
        }
        false
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Keystroke-to-echo latencies (ms) into `cat` in the session.
fn latencies(client: &mut Client) -> Vec<f64> {
    client.send(b"\x15cat\r");
    client.drain(Duration::from_millis(500));
    let alphabet = b"abcdefgijknopqrstuvwxyz";
    let mut times = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        if i % 50 == 49 {
            client.send(b"\r");
            client.drain(Duration::from_millis(100));
        }
        let key = alphabet[i % alphabet.len()];
        let t = Instant::now();
        client.send(&[key]);
        client.wait_text(&[key], Duration::from_secs(10));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        client.drain(Duration::from_millis(5));
    }
    client.send(b"\r\x04");
    client.drain(Duration::from_millis(300));
    times.sort_by(f64::total_cmp);
    times
}

/// Seconds to print 100 MB in the session until a marker after it shows.
fn flood(client: &mut Client, run: usize) -> (f64, u64) {
    client.send(b"clear\r");
    client.drain(Duration::from_millis(300));
    let marker = format!("FLOOD-{}-DONE", 1000 + run);
    let command = format!(
        "head -c 100000000 /dev/zero | tr '\\0' x | fold -w 100; echo FLOOD-$((1000+{run}))-DONE\r"
    );
    let t = Instant::now();
    client.send(command.as_bytes());
    let bytes = client.wait_text(marker.as_bytes(), Duration::from_secs(600));
    let seconds = t.elapsed().as_secs_f64();
    client.drain(Duration::from_millis(300));
    (seconds, bytes)
}

fn main() {
    let (Ok(name), Ok(container)) = (std::env::var("BENCH_BOX"), std::env::var("BENCH_CONTAINER"))
    else {
        eprintln!("run this through scripts/bench-attach (it sets BENCH_BOX and BENCH_CONTAINER)");
        return;
    };
    let agentbox = std::env::var("BENCH_AGENTBOX").unwrap_or_else(|_| "agentbox".into());
    let ours: Vec<String> = vec![
        agentbox,
        "attach".into(),
        name,
        "--session".into(),
        "agent".into(),
    ];
    let baseline: Vec<String> = [
        "docker",
        "exec",
        "-it",
        &container,
        "tmux",
        "-S",
        "/run/agentbox/tmux.sock",
        "attach-session",
        "-t",
        "=agent",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    for (label, argv) in [
        ("docker_exec_tmux_attach", &baseline),
        ("agentbox_attach", &ours),
    ] {
        let mut client = Client::start(argv);
        client.drain(Duration::from_millis(1500));
        let times = latencies(&mut client);
        println!(
            "{}",
            serde_json::json!({
                "measure": "keystroke_echo_ms", "client": label, "keys": times.len(),
                "p50": (percentile(&times, 0.5) * 1000.0).round() / 1000.0,
                "p99": (percentile(&times, 0.99) * 1000.0).round() / 1000.0,
            })
        );
        let mut runs: Vec<(f64, u64)> = (0..FLOOD_RUNS).map(|r| flood(&mut client, r)).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, bytes) = runs[runs.len() / 2];
        println!(
            "{}",
            serde_json::json!({
                "measure": "print_100MB_s", "client": label,
                "median": (median * 1000.0).round() / 1000.0,
                "all": runs.iter().map(|r| (r.0 * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                "client_bytes": bytes,
            })
        );
        client.send(b"\x01d");
        std::thread::sleep(Duration::from_millis(300));
    }
}
