//! Benchmarks of the targets, against baselines measured in the same run:
//!
//! 1. daemon idle RSS (target ≤ 8 MiB);
//! 2. `agentbox-ctl status` round trip as a whole process, p50/p99 (target p50 ≤ 2 ms),
//!    beside two floors: spawning `/bin/true`, and a Rust binary that exits at once;
//! 3. 50 services with port probes, start to all-ready, against the slowest service
//!    started alone (target ≤ 1.5×).
//!
//! Run: `cargo bench -p agentbox-ctl --bench ctl`. Prints one JSON object per measure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CTL: &str = env!("CARGO_BIN_EXE_agentbox-ctl");

struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
}

impl Daemon {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("ws")).expect("ws");
        std::fs::write(dir.path().join("ws/agentbox.yaml"), config).expect("config");
        let mut cmd = Command::new(CTL);
        cmd.arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        env(&mut cmd, dir.path());
        // The daemon's own log level; the CLI calls run without RUST_LOG, as hooks do.
        cmd.env("RUST_LOG", "warn");
        let child = cmd.spawn().expect("daemon");
        let d = Self { dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.ctl(&["status"]).success() {
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTL);
        cmd.args(args);
        env(&mut cmd, self.dir.path());
        cmd
    }

    fn ctl(&self, args: &[&str]) -> std::process::ExitStatus {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().expect("ctl")
    }

    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.ctl(&["shutdown"]);
        let _ = self.child.wait();
    }
}

fn env(cmd: &mut Command, dir: &Path) {
    cmd.env("AGENTBOX_WORKSPACE", dir.join("ws"))
        .env("AGENTBOX_RUN_DIR", dir.join("run"))
        .env("AGENTBOX_LOG_DIR", dir.join("log"))
        .env("AGENTBOX_STATE_DIR", dir.join("state"))
        .env_remove("RUST_LOG");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// How long `cmd` takes from spawn to exit, its output discarded.
fn timed(mut cmd: Command) -> Duration {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    cmd.status().expect("spawn");
    t.elapsed()
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// The command of a service that takes `delay_ms`, then listens on `port`. The listener is
/// this benchmark binary itself (`--listen PORT`): it starts in about a millisecond, so the
/// measure is the supervisor's, not an interpreter's start-up.
fn service_command(port: u16, delay_ms: u64) -> String {
    let exe = std::env::current_exe().expect("bench exe");
    format!(
        "sleep {:.3}; exec {} --listen {port}",
        delay_ms as f64 / 1000.0,
        exe.display()
    )
}

fn service(name: &str, port: u16, delay_ms: u64) -> String {
    format!(
        "  {name}:\n    command: \"{}\"\n    ready_when: {{port: {port}}}\n",
        service_command(port, delay_ms)
    )
}

/// The same command started by hand, with a 1 ms connect loop: the service's own start time.
fn direct_start_time(port: u16, delay_ms: u64) -> Duration {
    let t = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(service_command(port, delay_ms))
        .spawn()
        .expect("spawn");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn listen(port: &str) -> ! {
    let port: u16 = port.parse().expect("port");
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn all_ready_time(config: &str) -> Duration {
    let t = Instant::now();
    let d = Daemon::start(config);
    assert!(
        d.ctl(&["wait-ready", "--timeout", "60000"]).success(),
        "not ready"
    );
    t.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--noop") {
        return;
    }
    if args.get(1).map(String::as_str) == Some("--listen") {
        listen(args.get(2).map_or("", String::as_str));
    }
    // 1. Idle RSS.
    let idle = Daemon::start("");
    std::thread::sleep(Duration::from_secs(2));
    let rss = idle.rss_kib();
    println!("{{\"measure\":\"daemon_idle_rss_kib\",\"value\":{rss},\"target_max\":8192}}");

    // 2. status round trip vs. process spawn floors, interleaved so that all three see
    //    the same machine (this one's spawn cost drifts by ±30 % over seconds).
    for _ in 0..20 {
        idle.ctl(&["status"]);
    }
    let exe = std::env::current_exe().expect("bench exe");
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..500 {
        samples[0].push(timed(idle.command(&["status"])));
        samples[1].push(timed(Command::new("/bin/true")));
        let mut noop = Command::new(&exe);
        noop.arg("--noop");
        samples[2].push(timed(noop));
    }
    for s in &mut samples {
        s.sort();
    }
    let [status, floor, rust_floor] = samples;
    println!(
        "{{\"measure\":\"status_round_trip_ms\",\"p50\":{:.3},\"p99\":{:.3},\"spawn_floor_p50\":{:.3},\"spawn_floor_p99\":{:.3},\"rust_noop_p50\":{:.3},\"target_p50_max\":2.0}}",
        percentile(&status, 0.5),
        percentile(&status, 0.99),
        percentile(&floor, 0.5),
        percentile(&floor, 0.99),
        percentile(&rust_floor, 0.5)
    );
    drop(idle);

    // 3. 50 services with port probes; delays spread over 0..1 s.
    let ports = free_ports(51);
    let slowest_delay = 1000;
    let mut direct: Vec<Duration> = (0..5)
        .map(|_| direct_start_time(ports[50], slowest_delay))
        .collect();
    direct.sort();
    let alone = format!(
        "services:\n{}",
        service("slowest", ports[50], slowest_delay)
    );
    let mut alone_runs: Vec<Duration> = (0..3).map(|_| all_ready_time(&alone)).collect();
    alone_runs.sort();
    let mut fifty = String::from("services:\n");
    for (i, port) in ports[..50].iter().enumerate() {
        fifty.push_str(&service(
            &format!("s{i}"),
            *port,
            (i as u64 * slowest_delay) / 49,
        ));
    }
    let mut fifty_runs: Vec<Duration> = (0..3).map(|_| all_ready_time(&fifty)).collect();
    fifty_runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (d, a, f) = (ms(direct[2]), ms(alone_runs[1]), ms(fifty_runs[1]));
    println!(
        "{{\"measure\":\"fifty_services_all_ready_ms\",\"median\":{f:.1},\"slowest_direct_median\":{d:.1},\"slowest_alone_supervised_median\":{a:.1},\"ratio_vs_direct\":{:.3},\"target_ratio_max\":1.5}}",
        f / d
    );
}
