//! A Daytona sandbox whose toolbox answers without end (issue 20, sibling of #8): the
//! toolbox answers with what the box writes (a command's output, a file), so the host reads
//! each answer under a cap, stops reading there and says which answer it refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentbox::daytona::{Daytona, DaytonaError, Sandbox};

/// What the hostile toolbox sends for each path: 200 MiB, far past every cap.
const HUGE: usize = 200 << 20;

/// A toolbox that answers every request with `HUGE` bytes and no announced length, except
/// with `announce` set, where it announces the length first; counts the bytes it managed
/// to write in `written`.
fn hostile_toolbox(announce: bool, status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let written = Arc::new(AtomicUsize::new(0));
    let counted = written.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let framing = if announce {
                    format!("content-length: {}\r\n", HUGE + 14)
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{framing}connection: close\r\n\r\n{{\"exitCode\":0,\"result\":\""
                );
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let block = vec![b'a'; 1 << 20];
                for _ in 0..HUGE >> 20 {
                    if conn.write_all(&block).is_err() {
                        return; // the host stopped reading: what is wanted
                    }
                    counted.fetch_add(block.len(), Ordering::SeqCst);
                }
                let _ = conn.write_all(b"\"}");
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), written)
}

fn sandbox(toolbox: &str) -> Sandbox {
    serde_json::from_value(serde_json::json!({
        "id": "sb-hostile",
        "name": "agentbox-hostile",
        "toolboxProxyUrl": toolbox,
    }))
    .expect("sandbox json")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_toolbox_answering_without_end_is_refused_at_a_cap_and_named() {
    let rt = rt();
    // (what is called, announced length, status): a command's output and a file, with and
    // without an announced length, and an error answer that never ends.
    for (case, announce, status) in [
        ("execute", false, 200),
        ("execute", true, 200),
        ("download", false, 200),
        ("download", true, 200),
        ("execute", false, 400),
    ] {
        let (toolbox, written) = hostile_toolbox(announce, status);
        let mut daytona = Daytona::new(&toolbox, "key", None);
        daytona.backoff.clear();
        daytona.attempt_timeout = std::time::Duration::from_secs(60);
        let sb = sandbox(&toolbox);
        let result = rt.block_on(async {
            match case {
                "execute" => daytona.execute(&sb, "cat /dev/zero", None).await.map(drop),
                _ => daytona.download_file(&sb, "/big").await.map(drop),
            }
        });
        let sent = written.load(Ordering::SeqCst);
        eprintln!("{case} announce={announce} status={status}: {sent} bytes written before the host stopped");
        match (status, result) {
            (200, Err(e @ DaytonaError::TooLarge { .. })) => {
                let said = e.to_string();
                assert!(
                    said.contains("sb-hostile") && said.contains("most the host reads"),
                    "{case}: the error should name the answer and the cap: {said}"
                );
            }
            (400, Err(DaytonaError::Invalid(message))) => {
                assert!(
                    message.len() <= 64 << 10,
                    "an error body is kept to its first 64 KiB, not {} bytes",
                    message.len()
                );
            }
            (_, other) => panic!("{case} (announce {announce}, status {status}): {other:?}"),
        }
        assert!(
            sent < 96 << 20,
            "{case}: the host read {} MiB of a {} MiB answer",
            sent >> 20,
            HUGE >> 20
        );
    }
}
