//! A sandbox's activity and its auto-stop, as Daytona keeps them: `lastActivityAt` (an ISO
//! 8601 string, as the spec has it) moves when a request goes through the preview proxy
//! without `X-Daytona-Skip-Last-Activity-Update: true`, stays current while such a request
//! is open (Daytona's proxy renews it every 50 s until the answer ends: a long download or
//! an attached terminal keep their box awake), and on `POST /api/sandbox/{id}/last-activity`.
//! A started sandbox whose `autoStopInterval` (minutes; 0 is off) has passed since its last
//! activity, with no such request open, is stopped as `POST …/stop` would.
//!
//! Test control (not Daytona's): `DAYTONA_FAKE_MINUTE_MS`, how long an auto-stop minute
//! lasts [default: 60000], so a test sees an auto-stop in seconds.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{lock, Shared};

/// Per sandbox id: when it was last active (ms since the epoch) and how many requests that
/// count as activity are open. One fake per process, so one table per process.
#[derive(Default)]
struct Table {
    last: HashMap<String, u64>,
    open: HashMap<String, u32>,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// How long an auto-stop minute lasts here, in ms.
fn minute_ms() -> u64 {
    std::env::var("DAYTONA_FAKE_MINUTE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms > 0)
        .unwrap_or(60_000)
}

/// `ms` since the epoch as Daytona writes times: `2026-12-04T10:11:12.345Z`.
pub fn iso(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Marks sandbox `id` active now.
pub fn touch(fake: &Shared, id: &str) {
    let now = crate::now_ms();
    lock(table()).last.insert(id.to_string(), now);
    if let Some(s) = lock(&fake.sandboxes).get_mut(id) {
        s["lastActivityAt"] = json!(iso(now));
    }
}

/// A request that counts as activity while it is open (until dropped).
pub struct Open {
    fake: Shared,
    id: String,
}

/// Marks sandbox `id` active now and until the returned guard is dropped.
pub fn open(fake: &Shared, id: &str) -> Open {
    touch(fake, id);
    *lock(table()).open.entry(id.to_string()).or_insert(0) += 1;
    Open {
        fake: fake.clone(),
        id: id.to_string(),
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        {
            let mut t = lock(table());
            if let Some(n) = t.open.get_mut(&self.id) {
                *n = n.saturating_sub(1);
            }
        }
        // Its end is activity too (Daytona's last renewal is at most 50 s before it).
        touch(&self.fake, &self.id);
    }
}

/// `POST /api/sandbox/{sandboxId}/last-activity` (Daytona's `updateLastActivity`: `201`,
/// no body).
pub async fn update(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/sandbox/{id}/last-activity");
    if let Err(r) = crate::gate(&fake, &headers, &path) {
        return *r;
    }
    let known = lock(&fake.sandboxes).contains_key(&id);
    if !known {
        return crate::error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Sandbox with ID {id} not found"),
        );
    }
    touch(&fake, &id);
    StatusCode::CREATED.into_response()
}

/// Stops, as Daytona's auto-stop does, every started sandbox idle for its
/// `autoStopInterval`; checks every 50 ms until the process ends.
pub fn spawn_auto_stop(fake: Shared) {
    tokio::spawn(async move {
        let minute = minute_ms();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = crate::now_ms();
            let mut due = Vec::new();
            {
                let mut map = lock(&fake.sandboxes);
                let mut t = lock(table());
                for (id, s) in map.iter_mut() {
                    let running = s["state"] == "started" && s["desiredState"] == "started";
                    if !running {
                        // Counted again from its next start.
                        t.last.remove(id);
                        continue;
                    }
                    let last = *t.last.entry(id.clone()).or_insert_with(|| {
                        s["lastActivityAt"] = json!(iso(now));
                        now
                    });
                    let minutes = s["autoStopInterval"].as_u64().unwrap_or(0);
                    let open = t.open.get(id).copied().unwrap_or(0);
                    if minutes > 0 && open == 0 && now.saturating_sub(last) >= minutes * minute {
                        s["state"] = json!("stopping");
                        s["desiredState"] = json!("stopped");
                        due.push(id.clone());
                    }
                }
            }
            for id in due {
                eprintln!("daytona-fake: auto-stopping sandbox {id} (idle)");
                crate::settle(&fake, id, "stopping", "stopped", crate::Op::Change("stop"));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::iso;

    #[test]
    fn times_are_written_as_daytona_writes_them() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(1_796_379_410_767), "2026-12-04T10:16:50.767Z");
    }
}
