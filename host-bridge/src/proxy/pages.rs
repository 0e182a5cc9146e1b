//! The proxy's own answers: a short HTML page saying what went wrong and what to do.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

/// Bodies both ways (the upstream's streamed, the proxy's own pages whole).
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// `text` with `&`, `<`, `>`, `"` and `'` escaped for HTML.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page of status `status` saying `message` (escaped: it may carry a box's words).
pub fn page(status: u16, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let reason = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {reason} · agentbox proxy</title></head>\
         <body><h1>{code} {reason}</h1><p>{msg}</p><p><small>agentbox proxy</small></p></body></html>\n",
        code = status.as_u16(),
        msg = escaped(message),
    );
    let mut response = Response::new(
        Full::new(Bytes::from(html))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escapes_what_it_says() {
        assert_eq!(escaped("<b>&'\""), "&lt;b&gt;&amp;&#39;&quot;");
        assert_eq!(page(404, "x").status(), 404);
    }
}
