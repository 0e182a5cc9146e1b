//! The middleware: each request and answer of Daytona's API checked against the
//! [`Contract`], and the violations reported.

use std::io::Write;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;

use super::spec::{contract, Route};

/// The largest JSON body read for checking (the fake's JSON is small; uploads are not JSON).
const BODY_LIMIT: usize = 16 << 20;

/// The violations seen so far.
static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Reports a violation: stderr, the list, and the `DAYTONA_FAKE_VIOLATIONS` file.
fn record(violation: String) {
    eprintln!("daytona-fake: CONTRACT VIOLATION: {violation}");
    if let Some(path) = std::env::var_os("DAYTONA_FAKE_VIOLATIONS") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{}", violation.replace('\n', " ")));
        if let Err(e) = written {
            eprintln!(
                "daytona-fake: cannot append to DAYTONA_FAKE_VIOLATIONS {}: {e}",
                path.to_string_lossy()
            );
        }
    }
    VIOLATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(violation);
}

/// `GET /_fake/violations`: every violation since the start, as a JSON list of lines.
pub async fn violations() -> Json<Vec<String>> {
    Json(
        VIOLATIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or_default().trim();
            ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
        })
}

/// Reads a body to check it; a body that cannot be read is a violation and goes on empty.
async fn read(body: Body, what: &str) -> Bytes {
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            record(format!(
                "{what}: the body could not be read for checking: {e}"
            ));
            Bytes::new()
        }
    }
}

/// The middleware: checks the request, runs it, checks the answer.
pub async fn check(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    if matches!(
        contract().as_ref().map(|c| c.route(&method, &path).0),
        Ok(Route::Exempt)
    ) {
        return next.run(request).await;
    }
    let contract = match contract() {
        Ok(c) => c,
        Err(e) => {
            record(format!("the vendored spec cannot be used: {e}"));
            return next.run(request).await;
        }
    };
    let what = format!("{method} {path}");
    let (parts, body) = request.into_parts();
    let request = if is_json(&parts.headers) {
        let bytes = read(body, &what).await;
        for v in contract.check_request(&method, &path, query.as_deref(), Some(&bytes)) {
            record(v);
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        for v in contract.check_request(&method, &path, query.as_deref(), None) {
            record(v);
        }
        Request::from_parts(parts, body)
    };
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    if is_json(&parts.headers) {
        let bytes = read(body, &what).await;
        for v in contract.check_response(&method, &path, status, Some(&bytes)) {
            record(v);
        }
        Response::from_parts(parts, Body::from(bytes))
    } else {
        for v in contract.check_response(&method, &path, status, None) {
            record(v);
        }
        Response::from_parts(parts, body)
    }
}
