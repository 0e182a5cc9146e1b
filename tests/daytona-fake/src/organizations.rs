//! Organizations, as Daytona has them (v0.190.0, `apps/api/src/organization` and
//! `apps/api/src/auth/api-key.strategy.ts`):
//!
//! - `GET /api/organizations` lists every organization of the key's *user*, whichever key
//!   it is (Daytona's `findByUser`); `GET /api/organizations/{id}` answers only for an
//!   organization the credentials can act in: an API key bound to another one gets 403
//!   `Invalid authentication context`, as does an organization that does not exist.
//! - An API key is bound to one organization: every call made with it acts there and
//!   `X-Daytona-Organization-ID` is ignored (Daytona reads that header only with a JWT).
//! - A user's login token (a JWT: Daytona takes a token that is no API key as one) reaches
//!   every organization of its user, and the header chooses one. Daytona's
//!   `OrganizationAuthContextGuard` (every sandbox, snapshot, volume and object-storage
//!   route) refuses it 403 `Invalid authentication context` without the header, or with one
//!   naming none of the user's organizations (`jwt.strategy.ts` takes the organization
//!   from the header alone). `GET /organizations` and `GET /organizations/{id}` need no
//!   header (the user's guard; the id in the path).
//! - The fake's `--api-key` is such a user's token when it is shaped as a JWT (three
//!   base64url parts, the first `eyJ`), and is then held to all of the above. Any other
//!   `--api-key` (the older suites' `dtn_…`, `k`) is a test convenience Daytona has no
//!   match for: it reaches every organization like a user's token, and without the header
//!   acts in the first one.
//!
//! The organizations and the keys bound to them are a test control:
//! `POST /_fake/organizations {"organizations": [{"id", "name"}…], "keys": {"KEY": "ORG"}}`
//! replaces both (default: one personal organization, `org-fake`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{error, gate_user, lock, Fake, Shared};

/// The organizations and the API keys bound to one of them.
pub struct Orgs {
    /// `(id, name)`, the first one personal.
    list: Vec<(String, String)>,
    /// Key → the organization it is bound to.
    bound: std::collections::HashMap<String, String>,
}

impl Default for Orgs {
    fn default() -> Self {
        Self {
            list: vec![("org-fake".into(), "Personal".into())],
            bound: std::collections::HashMap::new(),
        }
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `key` is one of the API keys bound to an organization.
pub fn is_bound_key(fake: &Fake, key: &str) -> bool {
    lock(&fake.orgs).bound.contains_key(key)
}

/// Whether `token` is shaped as a JWT (`eyJ…` `.` … `.` …, base64url parts): a user's
/// login token, not an API key.
pub fn is_user_token(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && token.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The organization a call acts in, or why it is refused (Daytona's words: a user's
/// token without the header, or an unbound token's header naming no organization of its
/// user).
pub fn acting(fake: &Fake, headers: &HeaderMap) -> Result<String, String> {
    const REFUSED: &str = "Invalid authentication context";
    let orgs = lock(&fake.orgs);
    let token = bearer(headers);
    if let Some(org) = token.and_then(|k| orgs.bound.get(k)) {
        return Ok(org.clone());
    }
    match headers
        .get("x-daytona-organization-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(wanted) if orgs.list.iter().any(|(id, _)| id == wanted) => Ok(wanted.to_string()),
        Some(_) => Err(REFUSED.into()),
        None if token.is_some_and(is_user_token) => Err(REFUSED.into()),
        None => Ok(orgs
            .list
            .first()
            .map_or_else(|| "org-fake".to_string(), |(id, _)| id.clone())),
    }
}

/// The acting organization's id for a record the fake makes (a refused header has been
/// answered by `gate` already).
pub fn acting_id(fake: &Fake, headers: &HeaderMap) -> String {
    acting(fake, headers).unwrap_or_else(|_| "org-fake".into())
}

/// Daytona's `Organization` (every field its DTO requires).
fn organization(id: &str, name: &str, personal: bool) -> Value {
    json!({
        "id": id,
        "name": name,
        "createdBy": "user-fake",
        "personal": personal,
        "createdAt": "2026-11-29T00:00:00.000Z",
        "updatedAt": "2026-11-29T00:00:00.000Z",
        "suspended": false,
        "suspendedAt": "2026-11-29T00:00:00.000Z",
        "suspensionReason": "",
        "suspendedUntil": "2026-11-29T00:00:00.000Z",
        "suspensionCleanupGracePeriodHours": 24,
        "maxCpuPerSandbox": 4,
        "maxMemoryPerSandbox": 8,
        "maxDiskPerSandbox": 10,
        "snapshotDeactivationTimeoutMinutes": 20160,
        "sandboxLimitedNetworkEgress": false,
        "authenticatedRateLimit": null,
        "sandboxCreateRateLimit": null,
        "sandboxLifecycleRateLimit": null,
        "experimentalConfig": {},
        "otelConfig": null,
        "authenticatedRateLimitTtlSeconds": null,
        "sandboxCreateRateLimitTtlSeconds": null,
        "sandboxLifecycleRateLimitTtlSeconds": null,
    })
}

/// `GET /api/organizations`: all of the user's organizations, whatever the key.
pub async fn list(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate_user(&fake, &headers, "/api/organizations") {
        return *r;
    }
    let orgs = lock(&fake.orgs);
    let all: Vec<Value> = orgs
        .list
        .iter()
        .enumerate()
        .map(|(i, (id, name))| organization(id, name, i == 0))
        .collect();
    Json(all).into_response()
}

/// `GET /api/organizations/{id}`: only one the credentials can act in.
pub async fn get_one(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/organizations/{id}");
    if let Err(r) = gate_user(&fake, &headers, &path) {
        return *r;
    }
    let orgs = lock(&fake.orgs);
    let bound = bearer(&headers).and_then(|k| orgs.bound.get(k));
    let found = orgs.list.iter().position(|(o, _)| *o == id);
    match (found, bound) {
        (Some(i), None) => Json(organization(&id, &orgs.list[i].1, i == 0)).into_response(),
        (Some(i), Some(b)) if *b == id => {
            Json(organization(&id, &orgs.list[i].1, i == 0)).into_response()
        }
        _ => error(
            StatusCode::FORBIDDEN,
            &path,
            "Invalid authentication context",
        ),
    }
}

/// `POST /_fake/organizations`: replaces the organizations and the bound keys.
pub async fn set(State(fake): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let list: Option<Vec<(String, String)>> = body["organizations"].as_array().map(|a| {
        a.iter()
            .filter_map(|o| {
                Some((
                    o["id"].as_str()?.to_string(),
                    o["name"].as_str()?.to_string(),
                ))
            })
            .collect()
    });
    let Some(list) = list else {
        eprintln!("daytona-fake: organizations: `organizations` must be a list of {{id, name}}");
        return StatusCode::BAD_REQUEST;
    };
    let bound = body["keys"]
        .as_object()
        .map(|k| {
            k.iter()
                .filter_map(|(key, org)| Some((key.clone(), org.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    *lock(&fake.orgs) = Orgs { list, bound };
    StatusCode::NO_CONTENT
}
