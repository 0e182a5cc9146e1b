//! The relay's command API (`/v1/exec`) driven by the host's client
//! (`agentbox::relay_exec`): against a relay alone, and against the relay of a local box
//! (started by its ctl daemon, as in every box). Stdout and stderr arrive apart, exit codes
//! and signals as `docker exec` reports them, output streams before the command ends,
//! stdin is delivered once, a command whose caller went away is ended with its group, a
//! timeout ends one, and the box's secrets stay out of commands.

use std::process::Command;
use std::time::{Duration, Instant};

use agentbox::relay_exec::{capture, run, Ended, Stream};
use agentbox::transfer::client::Relay;
use agentbox_protocol::exec::{ExecExit, ExecFrame, ExecRequest, FrameReader};
use agentbox_tests::run::TimedOutput;
use agentbox_tests::{bin_path, spawn_relay, TEST_TOKEN};
use futures_util::StreamExt;

struct Box_ {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    relay: Relay,
    ws: std::path::PathBuf,
}

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relay_alone() -> Box_ {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("sub")).expect("mkdir");
    let (child, port) = spawn_relay(dir.path(), &[]);
    Box_ {
        relay: Relay::new(&format!("http://127.0.0.1:{port}"), TEST_TOKEN),
        _dir: dir,
        child,
        ws,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(ToString::to_string).collect()
}

fn exited(code: Option<i32>, signal: Option<i32>) -> Ended {
    Ended::Exited(ExecExit {
        code,
        signal,
        timed_out: false,
    })
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

#[test]
fn stdout_stderr_exit_codes_cwd_env_and_no_secrets() {
    let b = relay_alone();
    let rt = runtime();
    let (ended, out, err) = rt
        .block_on(capture(
            &b.relay,
            &ExecRequest::new(argv(&[
                "sh",
                "-c",
                "echo out; echo err >&2; echo more; exit 3",
            ])),
        ))
        .expect("exec");
    assert_eq!(ended, exited(Some(3), None));
    assert_eq!(out, b"out\nmore\n");
    assert_eq!(err, b"err\n");

    // Killed by a signal: 128 + its number, as a shell and `docker exec` say.
    let (ended, _, _) = rt
        .block_on(capture(
            &b.relay,
            &ExecRequest::new(argv(&["sh", "-c", "kill -9 $$"])),
        ))
        .expect("exec");
    assert_eq!(ended, exited(None, Some(9)));
    assert_eq!(ended.status_code(), 137);

    // A program the box lacks: 127 and the box's sentence, nothing run.
    let (ended, _, _) = rt
        .block_on(capture(
            &b.relay,
            &ExecRequest::new(argv(&["no-such-program-here"])),
        ))
        .expect("exec");
    match ended {
        Ended::Refused { code, message } => {
            assert_eq!(code, 127);
            assert!(message.contains("no such program"), "{message}");
        }
        other @ Ended::Exited(_) => panic!("{other:?}"),
    }

    // A relative cwd is under the workspace; env is set on top; the bridge token the relay
    // holds is not passed on.
    let mut request = ExecRequest::new(argv(&[
        "sh",
        "-c",
        "pwd; echo \"$GREETING\"; echo \"${AGENTBOX_BRIDGE_TOKEN:-none}\"",
    ]));
    request.cwd = Some("sub".into());
    request.env.insert("GREETING".into(), "hi there".into());
    let (ended, out, _) = rt.block_on(capture(&b.relay, &request)).expect("exec");
    assert_eq!(ended, exited(Some(0), None));
    let ws = std::fs::canonicalize(&b.ws).expect("canonical");
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{}/sub\nhi there\nnone\n", ws.display())
    );

    // Binary output, larger than one frame, arrives whole and in order.
    let (ended, out, _) = rt
        .block_on(capture(
            &b.relay,
            &ExecRequest::new(argv(&["head", "-c", "1000000", "/dev/urandom"])),
        ))
        .expect("exec");
    assert_eq!(ended, exited(Some(0), None));
    assert_eq!(out.len(), 1_000_000);
}

#[test]
fn bad_requests_and_missing_tokens_are_refused() {
    let b = relay_alone();
    let rt = runtime();
    let http = reqwest::Client::new();
    let url = b.relay.url("/v1/exec");
    let status = |body: serde_json::Value, token: Option<&str>| {
        rt.block_on(async {
            let mut r = http.post(&url).json(&body);
            if let Some(t) = token {
                r = r.header("x-agentbox-token", t).bearer_auth(t);
            }
            let answer = r.send().await.expect("send");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        })
    };
    let (code, _) = status(serde_json::json!({"argv": ["true"]}), None);
    assert_eq!(code, 401);
    let (code, said) = status(serde_json::json!({"argv": []}), Some(TEST_TOKEN));
    assert_eq!(code, 400);
    assert!(said.contains("no command given"), "{said}");
    let (code, said) = status(
        serde_json::json!({"argv": ["env"], "env": {"A-B": "x"}}),
        Some(TEST_TOKEN),
    );
    assert_eq!(code, 400);
    assert!(
        said.contains("`A-B` is not a valid environment variable name"),
        "{said}"
    );
    let (code, _) = status(
        serde_json::json!({"argv": ["true"], "cwd": "no/such/dir"}),
        Some(TEST_TOKEN),
    );
    // As `docker exec -w` has it: the command cannot be run there (126), it is not missing.
    assert_eq!(code, 400);
}

#[test]
fn output_streams_before_the_command_ends_and_stdin_arrives_once() {
    let b = relay_alone();
    let rt = runtime();
    let request = ExecRequest::new(argv(&["sh", "-c", "echo first; sleep 3; echo second"]));
    let began = Instant::now();
    let mut seen: Vec<(Duration, Vec<u8>)> = Vec::new();
    let ended = rt
        .block_on(run(&b.relay, &request, None, &mut |stream, bytes| {
            assert_eq!(stream, Stream::Stdout);
            seen.push((began.elapsed(), bytes.to_vec()));
            Ok(())
        }))
        .expect("exec");
    let total = began.elapsed();
    assert_eq!(ended, exited(Some(0), None));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1, b"first\n");
    assert!(
        seen[0].0 < Duration::from_secs(2) && total >= Duration::from_secs(3),
        "the first line came at {:?}, the end at {total:?}",
        seen[0].0
    );

    // Stdin in several pieces, then its end: `cat` gives back exactly what was sent.
    let mut request = ExecRequest::new(argv(&["cat"]));
    request.stdin = true;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut out = Vec::new();
    let ended = rt
        .block_on(async {
            tokio::spawn(async move {
                for piece in [b"one ".to_vec(), b"two ".to_vec(), vec![b'x'; 3 << 20]] {
                    tx.send(piece).await.expect("send");
                }
            });
            run(&b.relay, &request, Some(rx), &mut |_, bytes| {
                out.extend_from_slice(bytes);
                Ok(())
            })
            .await
        })
        .expect("exec");
    assert_eq!(ended, exited(Some(0), None));
    assert_eq!(out.len(), 8 + (3 << 20));
    assert!(out.starts_with(b"one two xxx"));

    // A resent piece (the same offset again) is not typed twice; a gap is refused with
    // the relay's offset.
    let http = reqwest::Client::new();
    let got = rt.block_on(async {
        let mut request = ExecRequest::new(argv(&["cat"]));
        request.stdin = true;
        let answer = http
            .post(b.relay.url("/v1/exec"))
            .header("x-agentbox-token", TEST_TOKEN)
            .bearer_auth(TEST_TOKEN)
            .json(&request)
            .send()
            .await
            .expect("start");
        let mut body = answer.bytes_stream();
        let mut frames = FrameReader::new();
        let mut id = None;
        while id.is_none() {
            frames.push(&body.next().await.expect("frame").expect("bytes"));
            while let Some(f) = frames.next_frame().expect("frame") {
                if let ExecFrame::Started(s) = f {
                    id = Some(s.id);
                }
            }
        }
        let stdin = b.relay.url(&format!("/v1/exec/{}/stdin", id.expect("id")));
        let post = |offset: u64, bytes: &'static [u8], eof: bool| {
            let mut r = http
                .post(&stdin)
                .header("x-agentbox-token", TEST_TOKEN)
                .bearer_auth(TEST_TOKEN)
                .header("x-agentbox-offset", offset.to_string())
                .body(bytes);
            if eof {
                r = r.header("x-agentbox-eof", "1");
            }
            r.send()
        };
        assert!(post(0, b"abc", false)
            .await
            .expect("post")
            .status()
            .is_success());
        assert!(post(0, b"abc", false)
            .await
            .expect("post")
            .status()
            .is_success());
        let gap = post(9, b"zzz", false).await.expect("post");
        assert_eq!(gap.status().as_u16(), 409);
        assert_eq!(gap.headers()["x-agentbox-offset"], "3");
        assert!(post(1, b"bcdef", true)
            .await
            .expect("post")
            .status()
            .is_success());
        let mut out = Vec::new();
        loop {
            let Some(chunk) = body.next().await else {
                break;
            };
            frames.push(&chunk.expect("bytes"));
            while let Some(f) = frames.next_frame().expect("frame") {
                if let ExecFrame::Stdout(b) = f {
                    out.extend_from_slice(&b);
                }
            }
        }
        out
    });
    assert_eq!(got, b"abcdef");
}

#[test]
fn a_caller_that_goes_away_or_a_timeout_ends_the_process_group() {
    let b = relay_alone();
    let rt = runtime();
    // The command and a child of it in the background, both in its group.
    let request = ExecRequest::new(argv(&["sh", "-c", "sleep 300 & echo $$ $!; wait"]));
    let pids: Vec<i32> = rt.block_on(async {
        let mut pids = Vec::new();
        let ended = tokio::time::timeout(
            Duration::from_secs(5),
            run(&b.relay, &request, None, &mut |_, bytes| {
                pids.extend(
                    String::from_utf8_lossy(bytes)
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
                Ok(())
            }),
        )
        .await;
        // The call was dropped, as when the host process ends (the runtime goes on, so
        // the client's connection task closes the connection).
        assert!(ended.is_err(), "the command ended by itself: {ended:?}");
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert!(pids.iter().all(|p| alive(*p)), "not running: {pids:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) {
            assert!(
                Instant::now() < deadline,
                "still running 10 s after the caller left: {pids:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pids
    });
    assert_eq!(pids.len(), 2);

    // A timeout ends it too, and says so (exit 124, as timeout(1)).
    let mut request = ExecRequest::new(argv(&["sh", "-c", "echo started; sleep 30"]));
    request.timeout_ms = Some(500);
    let began = Instant::now();
    let (ended, out, _) = rt.block_on(capture(&b.relay, &request)).expect("exec");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(out, b"started\n");
    match &ended {
        Ended::Exited(e) => assert!(e.timed_out, "{e:?}"),
        other @ Ended::Refused { .. } => panic!("{other:?}"),
    }
    assert_eq!(ended.status_code(), 124);

    // A command that exits by itself leaves what it started in the background alone (as
    // `docker exec`), its output cut once the command is gone.
    let (ended, out, _) = rt
        .block_on(capture(
            &b.relay,
            &ExecRequest::new(argv(&["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"])),
        ))
        .expect("exec");
    assert_eq!(ended, exited(Some(0), None));
    let pid: i32 = String::from_utf8_lossy(&out).trim().parse().expect("pid");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(pid), "the background child was ended");
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// A local box's relay (run by the box's ctl daemon, as in every box) answers commands
/// through the host's client; the box's own environment reaches them, its bridge token
/// does not.
#[test]
fn commands_through_a_local_box_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let git = |args: &[&str]| {
        assert!(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .expect("git")
            .success());
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "T"]);
    std::fs::write(repo.join("README"), "seeded\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-qm", "first"]);
    let agentbox = |args: &[&str]| {
        Command::new(bin_path("agentbox"))
            .args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", &home)
            .timed_output()
            .expect("agentbox")
    };
    agentbox_tests::succeeded(&["create"], &agentbox(&["create", "--name", "ex"]));
    let record = agentbox::state::State::open(&home.join("state.db"))
        .expect("state")
        .get("ex")
        .expect("get")
        .expect("record");
    let relay = Relay::new(
        record.bridge_url.as_deref().expect("url"),
        &record.bridge_token,
    );
    let rt = runtime();
    let (ended, out, err) = rt
        .block_on(capture(
            &relay,
            &ExecRequest::new(argv(&[
                "sh",
                "-c",
                "cat README; echo \"$AGENTBOX_BOX_NAME ${AGENTBOX_BRIDGE_TOKEN:-no-token}\"; agentbox-ctl status >/dev/null && echo ctl-ok; echo oops >&2; exit 5",
            ])),
        ))
        .expect("exec");
    let _ = agentbox(&["destroy", "ex", "-y", "--force"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "seeded\nex no-token\nctl-ok\n",
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(err, b"oops\n");
    assert_eq!(ended, exited(Some(5), None));
}
