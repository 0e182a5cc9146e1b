//! Codec properties for every message type, garbage-input safety, and golden JSON shapes.

use bytes::BytesMut;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use tokio_util::codec::{Decoder, Encoder};

use crate::bridge::*;
use crate::ctl::*;
use crate::error::ErrorBody;
use crate::status::BoxStatus;
use crate::{ErrorCode, ErrorReply, FrameCodec, Hello};

mod decoders;
use decoders::{decode_garbage, json_garbage, json_value, GARBAGE_CAP};

fn frame_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    let mut codec = FrameCodec::<T, T>::new();
    let mut buf = BytesMut::new();
    codec.encode(value.clone(), &mut buf).expect("encode");
    let decoded = codec
        .decode(&mut buf)
        .expect("decode")
        .expect("a whole frame");
    assert_eq!(&decoded, value);
    assert!(buf.is_empty(), "the frame was not consumed whole");
}

fn json_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).expect("to json");
    let back: T = serde_json::from_str(&text).expect("from json");
    assert_eq!(&back, value);
}

/// Every prefix of a valid frame is "need more" or an error, never a wrong value or panic.
fn truncations<T>(value: &T)
where
    T: Serialize + DeserializeOwned + Clone,
{
    let mut codec = FrameCodec::<T, T>::new();
    let mut full = BytesMut::new();
    codec.encode(value.clone(), &mut full).expect("encode");
    // Every cut point for small frames; an even sample of 64 for large ones.
    let step = (full.len() / 64).max(1);
    for cut in (0..full.len()).step_by(step).chain([full.len() - 1]) {
        let mut part = BytesMut::from(&full[..cut]);
        assert!(
            matches!(codec.decode(&mut part), Ok(None)),
            "prefix {cut} decoded early"
        );
        if cut > 0 {
            assert!(
                codec.decode_eof(&mut part).is_err(),
                "prefix {cut} accepted at eof"
            );
        }
    }
}

macro_rules! message_properties {
    ($($name:ident: $ty:ty),* $(,)?) => {
        mod frames {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
                $(
                    #[test]
                    fn $name(value: $ty) {
                        frame_round_trip(&value);
                        json_round_trip(&value);
                        truncations(&value);
                    }
                )*
            }
        }
        mod garbage {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
                $(
                    #[test]
                    fn $name(
                        near_cap in proptest::option::of(0u32..(2 * GARBAGE_CAP as u32)),
                        tail in proptest::collection::vec(any::<u8>(), 0..512),
                    ) {
                        // Random bytes, or a length near the cap (either side) before them.
                        let mut bytes = near_cap.map(|l| l.to_be_bytes().to_vec()).unwrap_or_default();
                        bytes.extend_from_slice(&tail);
                        decode_garbage::<$ty>(&bytes);
                    }
                )*
            }
        }
        mod framed_garbage {
            use super::*;
            // Garbage inside a well-formed length prefix reaches the bincode decoder.
            proptest! {
                #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
                $(
                    #[test]
                    fn $name(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
                        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
                        bytes.extend_from_slice(&payload);
                        decode_garbage::<$ty>(&bytes);
                    }
                )*
            }
        }
    };
}

message_properties! {
    hello: Hello,
    agent_status: crate::agent::AgentStatus,
    ctl_request: CtlRequest,
    ctl_response: CtlResponse,
    relay_request: RelayRequest,
    relay_event: RelayEvent,
    poll_response: PollResponse,
    progress_post: ProgressPost,
    result_post: ResultPost,
    result_ack: ResultAck,
    health: Health,
    error_body: ErrorBody,
    box_status: BoxStatus,
    exposed_services: crate::proxy::ExposedServices,
    proxy_error: crate::proxy::ProxyError,
    upload_status: crate::files::UploadStatus,
    land_request: crate::files::LandRequest,
    landed: crate::files::Landed,
    download_request: crate::files::DownloadRequest,
    download_info: crate::files::DownloadInfo,
    download_digest: crate::files::DownloadDigest,
    use_upload: crate::files::UseUpload,
    sync_manifest: crate::sync::SyncManifest,
    digests_request: crate::sync::DigestsRequest,
    digests_response: crate::sync::DigestsResponse,
    sync_report: crate::sync::SyncReport,
    listing_request: crate::sync::ListingRequest,
    listing: crate::sync::Listing,
}

// The terminal API is JSON only (its enums are internally tagged).
mod term_json {
    use super::*;
    use crate::term::{TermControl, TermEvent, TermInfo, TermOpen};
    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn term_open(value: TermOpen) { json_round_trip(&value); }
        #[test]
        fn term_info(value: TermInfo) { json_round_trip(&value); }
        #[test]
        fn term_event(value: TermEvent) { json_round_trip(&value); }
        #[test]
        fn term_control(value: TermControl) { json_round_trip(&value); }
        #[test]
        fn input_messages(offset: u64, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let message = crate::term::encode_input(offset, &bytes);
            prop_assert_eq!(crate::term::decode_input(&message), Some((offset, &bytes[..])));
            prop_assert_eq!(crate::term::decode_input(&message[..message.len().min(7)]), None);
        }
        #[test]
        fn term_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            json_garbage::<TermOpen>(&bytes);
            json_garbage::<TermEvent>(&bytes);
            json_garbage::<TermControl>(&bytes);
        }
        #[test]
        fn term_json_garbage(
            value in json_value(),
            kind in prop_oneof![Just("resize".to_string()), Just("hello".to_string()), Just("ended".to_string()), "[a-z_]{0,12}"],
        ) {
            // A well-formed document of the wrong shape, tagged or not.
            let mut tagged = value.clone();
            if let serde_json::Value::Object(map) = &mut tagged {
                map.insert("type".into(), serde_json::Value::String(kind));
            }
            for doc in [value, tagged] {
                let bytes = serde_json::to_vec(&doc).expect("json");
                json_garbage::<TermOpen>(&bytes);
                json_garbage::<TermEvent>(&bytes);
                json_garbage::<TermControl>(&bytes);
            }
        }
    }

    #[test]
    fn term_shapes() {
        let control = TermControl::Resize(crate::term::TermSize { cols: 80, rows: 24 });
        assert_eq!(
            serde_json::to_string(&control).expect("json"),
            r#"{"type":"resize","cols":80,"rows":24}"#
        );
        let event = TermEvent::Ended {
            reason: crate::term::TermEnd::SessionEnded,
            produced: 5,
        };
        assert_eq!(
            serde_json::to_string(&event).expect("json"),
            r#"{"type":"ended","reason":"session_ended","produced":5}"#
        );
        let id = crate::term::new_term_id().expect("id");
        assert!(crate::term::is_term_id(&id), "{id}");
        assert!(!crate::term::is_term_id(
            "t../../etc/passwd0000000000000000"
        ));
        assert!(crate::term::valid_session_name("claude-2"));
        assert!(!crate::term::valid_session_name("a:b"));
        assert!(!crate::term::valid_term_name("xterm;rm"));
    }
}

/// Every message that names a tmux session refuses, when it is read, a name that is no
/// session name: the box sends these (agent reports, session lists, status, terms) and
/// the host prints the name, keys records by it and hands it back to tmux.
#[test]
fn messages_naming_a_session_refuse_a_hostile_name() {
    let hostile = [
        "",
        "a:b",
        "a.b",
        "../x",
        "x\n[agentbox] approved",
        "\u{1b}[2Jx",
        "=claude",
        &"x".repeat(65),
    ];
    for name in hostile {
        let agent = json!({"session": name, "agent": "claude", "state": "waiting",
            "detail": null, "since_ms": 1});
        let info = json!({"name": name, "running": true, "started_at_ms": 1, "attached": 0,
            "agent": null});
        let status = json!({"schema": 1, "box_name": null, "generated_at_ms": 1,
            "units": [], "sessions": [info.clone()], "problem": null});
        let term = json!({"id": format!("t{}", "0".repeat(32)), "session": name,
            "produced": 0, "digest": "", "input": 0, "held_from": 0, "read_only": false,
            "ended": null});
        let open = json!({"session": name, "size": {"cols": 80, "rows": 24}});
        let spec = json!({"name": name, "cwd": null, "argv": ["sh"], "env": []});
        let refused = [
            serde_json::from_value::<crate::agent::AgentStatus>(agent).is_err(),
            serde_json::from_value::<SessionInfo>(info).is_err(),
            serde_json::from_value::<BoxStatus>(status).is_err(),
            serde_json::from_value::<crate::term::TermInfo>(term).is_err(),
            serde_json::from_value::<crate::term::TermOpen>(open).is_err(),
            serde_json::from_value::<SessionSpec>(spec).is_err(),
            serde_json::from_value::<CtlRequest>(json!({"SessionKill": {"name": name}})).is_err(),
        ];
        assert_eq!(refused, [true; 7], "{name:?}");
    }
}

fn sample_unit() -> UnitStatus {
    UnitStatus {
        name: "api".into(),
        kind: UnitKind::Service,
        state: UnitState::Ready,
        ready: true,
        autostart: true,
        pid: Some(42),
        restarts: 1,
        exit_code: None,
        exit_signal: None,
        started_at_ms: Some(1_700_000_000_000),
        finished_at_ms: None,
        next_restart_at_ms: None,
        blocked_on: vec![],
        detail: None,
        expose: Some(Exposure {
            port: 3000,
            default: true,
        }),
        command: "npm run dev".into(),
    }
}

#[test]
fn golden_unit_status() {
    assert_eq!(
        serde_json::to_value(sample_unit()).expect("json"),
        json!({
            "name": "api", "kind": "service", "state": "ready", "ready": true, "autostart": true,
            "pid": 42, "restarts": 1, "exit_code": null, "exit_signal": null,
            "started_at_ms": 1_700_000_000_000_u64, "finished_at_ms": null, "next_restart_at_ms": null,
            "blocked_on": [], "detail": null, "expose": {"port": 3000, "default": true},
            "command": "npm run dev"
        })
    );
}

#[test]
fn golden_wait_ready() {
    let r = WaitReadyReport {
        ready: false,
        failed: vec![UnitProblem {
            name: "db".into(),
            state: Some(UnitState::Failed),
            reason: "exited with code 1".into(),
        }],
        timed_out: vec![],
    };
    assert_eq!(
        serde_json::to_value(r).expect("json"),
        json!({"ready": false, "failed": [{"name": "db", "state": "failed", "reason": "exited with code 1"}], "timed_out": []})
    );
}

#[test]
fn golden_poll_response() {
    let p = PollResponse {
        requests: vec![
            LeasedRequest {
                id: RequestId::try_from("r1".to_string()).expect("id"),
                lease: "l1".into(),
                lease_expires_at_ms: 10,
                attempt: 1,
                created_at_ms: 5,
                request: HostRequest::Notify {
                    message: "done".into(),
                },
            },
            LeasedRequest {
                id: RequestId::try_from("r2".to_string()).expect("id"),
                lease: "l2".into(),
                lease_expires_at_ms: 10,
                attempt: 2,
                created_at_ms: 6,
                request: HostRequest::Git(GitRequest {
                    op: GitOp::Push,
                    remote: Some("origin".into()),
                    branch: None,
                    flags: vec![GitFlag::ForceWithLease],
                    bundle: Some(BlobRef {
                        blake3: "ab".into(),
                        size: 3,
                    }),
                    tags: Vec::new(),
                }),
            },
        ],
    };
    assert_eq!(
        serde_json::to_value(p).expect("json"),
        json!({"requests": [
            {"id": "r1", "lease": "l1", "lease_expires_at_ms": 10, "attempt": 1, "created_at_ms": 5,
             "request": {"notify": {"message": "done"}}},
            {"id": "r2", "lease": "l2", "lease_expires_at_ms": 10, "attempt": 2, "created_at_ms": 6,
             "request": {"git": {"op": "push", "remote": "origin", "branch": null,
                                 "flags": ["force_with_lease"], "bundle": {"blake3": "ab", "size": 3}, "tags": []}}}
        ]})
    );
}

#[test]
fn golden_gh_and_open_requests() {
    assert_eq!(
        serde_json::to_value(HostRequest::Gh(GhRequest::PrCreate {
            title: "t".into(),
            body: "b".into(),
            base: None,
            draft: true,
        }))
        .expect("json"),
        json!({"gh": {"pr_create": {"title": "t", "body": "b", "base": null, "draft": true}}})
    );
    assert_eq!(
        serde_json::to_value(HostRequest::Open {
            url: "https://x".into()
        })
        .expect("json"),
        json!({"open": {"url": "https://x"}})
    );
}

#[test]
fn golden_result_and_ack() {
    let r = ResultPost {
        id: RequestId::try_from("r1".to_string()).expect("id"),
        lease: "l1".into(),
        outcome: Outcome {
            exit_code: 0,
            stdout: "ok\n".into(),
            stderr: String::new(),
            bundle: None,
        },
    };
    assert_eq!(
        serde_json::to_value(r).expect("json"),
        json!({"id": "r1", "lease": "l1", "outcome": {"exit_code": 0, "stdout": "ok\n", "stderr": "", "bundle": null}})
    );
    assert_eq!(
        serde_json::to_value(ResultAck {
            id: RequestId::try_from("r1".to_string()).expect("id"),
            recorded: true
        })
        .expect("json"),
        json!({"id": "r1", "recorded": true})
    );
    assert_eq!(
        serde_json::to_value(ProgressPost {
            id: RequestId::try_from("r1".to_string()).expect("id"),
            lease: "l".into(),
            lines: vec!["a".into()]
        })
        .expect("json"),
        json!({"id": "r1", "lease": "l", "lines": ["a"]})
    );
}

#[test]
fn golden_error_body_and_health() {
    let e = ErrorBody {
        error: ErrorReply::new(ErrorCode::LeaseExpired, "lease l1 expired"),
    };
    assert_eq!(
        serde_json::to_value(e).expect("json"),
        json!({"error": {"code": "lease_expired", "message": "lease l1 expired"}})
    );
    let h = Health {
        status: "ok".into(),
        program: "agentbox-relay".into(),
        version: "0.1.0".into(),
        protocol_version: 1,
    };
    assert_eq!(
        serde_json::to_value(h).expect("json"),
        json!({"status": "ok", "program": "agentbox-relay", "version": "0.1.0", "protocol_version": 1})
    );
}

#[test]
fn golden_box_status() {
    let s = BoxStatus {
        schema: 1,
        box_name: Some("b1".into()),
        generated_at_ms: 7,
        units: vec![],
        sessions: vec![SessionInfo {
            agent: None,
            name: "claude".parse().expect("name"),
            running: true,
            started_at_ms: Some(1),
            attached: 0,
        }],
        problem: None,
    };
    assert_eq!(
        serde_json::to_value(s).expect("json"),
        json!({"schema": 1, "box_name": "b1", "generated_at_ms": 7, "units": [],
               "sessions": [{"name": "claude", "running": true, "started_at_ms": 1, "attached": 0, "agent": null}],
               "problem": null})
    );
}

#[test]
fn git_flags_allowlist() {
    for f in [
        GitFlag::ForceWithLease,
        GitFlag::Tags,
        GitFlag::DryRun,
        GitFlag::Quiet,
        GitFlag::Verbose,
    ] {
        assert_eq!(GitFlag::from_arg(f.as_arg()), Some(f));
    }
    for hostile in [
        "-c",
        "--receive-pack=x",
        "--upload-pack",
        "--exec=sh",
        "--force",
        "-f",
        "--mirror",
        "",
    ] {
        assert_eq!(GitFlag::from_arg(hostile), None, "{hostile}");
    }
}

#[test]
fn golden_file_transfers() {
    use crate::files::{DownloadInfo, LandRequest, TransferKind};
    let land = LandRequest {
        blake3: "ab".into(),
        size: 3,
        kind: TransferKind::File,
        dest: "src/".into(),
        name: Some("a.txt".into()),
        mode: Some(0o644),
    };
    assert_eq!(
        serde_json::to_value(&land).expect("json"),
        json!({"blake3": "ab", "size": 3, "kind": "file", "dest": "src/", "name": "a.txt", "mode": 420})
    );
    let info = DownloadInfo {
        id: "0123456789abcdef".to_string().try_into().expect("id"),
        kind: TransferKind::Tar,
        size: 10240,
        name: "dir".into(),
        mode: 0o755,
    };
    assert_eq!(
        serde_json::to_value(&info).expect("json"),
        json!({"id": "0123456789abcdef", "kind": "tar", "size": 10240, "name": "dir", "mode": 493})
    );
}

#[test]
fn transfer_ids_are_plain() {
    assert!(crate::files::is_transfer_id("0123456789abcdef"));
    for bad in [
        "short",
        "../../../../etc/passwd",
        "0123456789ABCDEF",
        "0123456789abcdef/x",
    ] {
        assert!(!crate::files::is_transfer_id(bad), "{bad}");
    }
}

#[test]
fn golden_agent_state_request() {
    let r = HostRequest::AgentState(crate::agent::AgentStatus {
        session: "claude".parse().expect("name"),
        agent: "claude".into(),
        state: crate::agent::AgentState::Waiting,
        detail: Some("Claude needs your permission to use Bash".into()),
        since_ms: 5,
    });
    assert_eq!(
        serde_json::to_value(r).expect("json"),
        json!({"agent_state": {"session": "claude", "agent": "claude", "state": "waiting",
               "detail": "Claude needs your permission to use Bash", "since_ms": 5}})
    );
}

/// Issue 20, hole 1: an id the box (or a hostile relay) chooses ends up in host staging
/// paths, so one that is not a plain token must not even parse.
#[test]
fn box_chosen_ids_that_could_name_a_path_do_not_parse() {
    for hostile in [
        "/../../victim",
        "a/../../../victim",
        "..",
        "",
        "0123456789abcdef/../../x",
        "0123456789abcdef\u{0}",
    ] {
        let info = json!({"id": hostile, "kind": "tar", "size": 1, "name": "x", "mode": 420});
        let parsed = serde_json::from_value::<crate::files::DownloadInfo>(info);
        assert!(parsed.is_err(), "download id {hostile:?} was accepted");
        let poll = json!({"requests": [{
            "id": hostile, "lease": "l", "lease_expires_at_ms": 1, "attempt": 1,
            "created_at_ms": 1, "request": {"notify": {"message": "hi"}}
        }]});
        let parsed = serde_json::from_value::<PollResponse>(poll);
        assert!(parsed.is_err(), "request id {hostile:?} was accepted");
    }
}

// An invite's screen address goes through the same check as its web address
// (`share/address.rs`).
#[test]
fn an_invites_screen_address_is_checked_like_its_web_address() {
    use crate::share::{Invite, RelayAddress, Scope, ShareError, ShareId, ShareToken};
    let with = |screen: &str| {
        Invite::decode(
            &Invite {
                provider: "docker".into(),
                box_name: "b1".into(),
                relay: RelayAddress::Loopback {
                    url: "http://127.0.0.1:4000".into(),
                },
                web_url: Some("http://127.0.0.1:4001".into()),
                screen_url: Some(screen.into()),
                share_id: ShareId::generate().expect("id"),
                token: ShareToken::generate().expect("token"),
                scopes: vec![Scope::Url],
                expires_at_ms: 5,
            }
            .encode(),
        )
    };
    assert!(with("http://agentbox-screen.localhost:4001/vnc.html?autoconnect=1").is_ok());
    for bad in [
        "http://10.0.0.5:6080/vnc.html",
        "http://127.0.0.1:4001@10.0.0.5/",
        "http://127.0.0.1:4001/\u{9b}2J",
    ] {
        assert!(matches!(with(bad), Err(ShareError::BadInvite(_))), "{bad}");
    }
}

/// The names and ids shown in tables honour a width (`{:<20}`), as `str` does: `share
/// --list` printed its ID column unpadded, one column off, when `Display` wrote the text
/// without `Formatter::pad`.
#[test]
fn ids_and_states_are_padded_in_tables() {
    let id = crate::share::ShareId::generate().expect("id");
    assert_eq!(format!("{id:<24}|").len(), 25, "{id:<24}|");
    assert_eq!(format!("{:>9}|", UnitState::Running), "  running|");
    let request = RequestId::try_from("r-1".to_string()).expect("id");
    assert_eq!(format!("{request:<5}|"), "r-1  |");
}
