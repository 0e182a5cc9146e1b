//! A box's relay that never ends a command the host runs through it (`POST /v1/exec`, the
//! path of every `agentbox-ctl` call to a Daytona sandbox): the host gives up at the
//! request's own time limit plus a short overrun, however the relay stalls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use agentbox::relay_exec::{capture, OVERRUN};
use agentbox_protocol::exec::{ExecFrame, ExecRequest};

/// How a hostile relay stalls once it has read the request.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// It never answers at all (no status line).
    Silent,
    /// It answers 200 and sends a heartbeat every 300 ms, forever: the stream looks alive.
    Heartbeats,
    /// It answers 200, says the command started, and trickles a byte of output forever.
    Trickle,
}

/// A relay on loopback that stalls every exec `how`; its port.
fn stalling_relay(how: Stall) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if matches!(how, Stall::Silent) {
                    std::thread::sleep(Duration::from_secs(600));
                    return;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                let mut frames = Vec::new();
                if matches!(how, Stall::Trickle) {
                    let started =
                        serde_json::json!({"id": format!("x{}", "0".repeat(32)), "pid": 7});
                    frames.extend(serde_json::from_value(started).map(ExecFrame::Started));
                }
                loop {
                    let frame = match how {
                        Stall::Trickle if !frames.is_empty() => frames.remove(0),
                        Stall::Trickle => ExecFrame::Stdout(b".".to_vec()),
                        _ => ExecFrame::Heartbeat,
                    };
                    let bytes = frame.encode();
                    let chunk = [
                        format!("{:x}\r\n", bytes.len()).into_bytes(),
                        bytes,
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        }
    });
    port
}

#[test]
fn a_relay_that_never_ends_a_command_does_not_hold_the_host() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limit = Duration::from_secs(1);
    for how in [Stall::Silent, Stall::Heartbeats, Stall::Trickle] {
        let port = stalling_relay(how);
        let relay =
            agentbox::transfer::client::Relay::new(&format!("http://127.0.0.1:{port}"), "token");
        let mut request = ExecRequest::new(vec!["agentbox-ctl".into(), "unpushed".into()]);
        request.timeout_ms = Some(u64::try_from(limit.as_millis()).expect("ms"));
        let started = Instant::now();
        // Far past what the host may take: reaching it means the host would wait forever.
        let outcome = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), capture(&relay, &request)).await
        });
        let took = started.elapsed();
        let outcome = outcome.unwrap_or_else(|elapsed| {
            panic!("{how:?}: the host was still waiting on the box after 60 s ({elapsed})")
        });
        let said = match outcome {
            Ok(ended) => panic!("{how:?}: a command that never ended ended: {ended:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            took < limit + OVERRUN + Duration::from_secs(5),
            "{how:?}: the host gave up only after {took:?}"
        );
        assert!(said.contains("time limit"), "{how:?}: {said}");
        eprintln!("{how:?}: given up after {took:?}: {said}");
    }
}
