//! Input posted in offset-numbered pieces (a command's stdin, a tunnel's bytes): the
//! piece says at which byte it starts (`X-Agentbox-Offset`, absent: where the input
//! stands) and whether the input ends with it (`X-Agentbox-Eof: 1`). A piece sent again
//! after a lost answer is skipped up to what was already taken, so nothing is written
//! twice; one that would leave a gap is refused with the offset expected.

use agentbox_protocol::exec::EOF_HEADER;
use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::ErrorCode;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;

/// The part of a posted piece not yet taken, and whether the input ends with it.
pub struct Piece<'a> {
    /// Bytes past `taken`, to be written.
    pub fresh: &'a [u8],
    /// The sender has no more.
    pub eof: bool,
}

/// Reads a piece of `what` (named in the refusal) posted with `headers` against the
/// `taken` bytes so far.
///
/// # Errors
/// The answer to give: 400 for an unreadable offset, 409 (with the expected offset in
/// its header) for a piece that starts past `taken`.
pub fn piece<'a>(
    headers: &HeaderMap,
    taken: u64,
    body: &'a [u8],
    what: &str,
) -> Result<Piece<'a>, Box<Response>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let eof = header(EOF_HEADER) == Some("1");
    let offset = match header(OFFSET_HEADER).map(str::parse::<u64>) {
        None => taken,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return Err(Box::new(
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    format!("{OFFSET_HEADER} is not a byte offset"),
                )
                .into_response(),
            ))
        }
    };
    if offset > taken {
        let mut r = ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("{what} is at byte {taken}, not {offset}"),
        )
        .into_response();
        r.headers_mut().insert(OFFSET_HEADER, taken.into());
        return Err(Box::new(r));
    }
    let skip = usize::try_from(taken - offset)
        .unwrap_or(usize::MAX)
        .min(body.len());
    Ok(Piece {
        fresh: &body[skip..],
        eof,
    })
}

/// The answer to a piece taken: 204 with where the input now stands.
pub fn taken(taken: u64) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(OFFSET_HEADER, taken.into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(offset: &str, eof: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(OFFSET_HEADER, offset.parse().expect("header"));
        if eof {
            h.insert(EOF_HEADER, "1".parse().expect("header"));
        }
        h
    }

    #[test]
    fn a_resent_piece_is_skipped_a_gap_refused_and_a_bad_offset_is_a_bad_request() {
        let p = piece(&headers("3", false), 5, b"abcdef", "stdin").expect("taken");
        assert_eq!((p.fresh, p.eof), (&b"cdef"[..], false));
        let p = piece(&headers("0", true), 9, b"abc", "stdin").expect("taken");
        assert_eq!((p.fresh, p.eof), (&b""[..], true));
        let gap = piece(&headers("6", false), 5, b"x", "stdin")
            .err()
            .expect("refused");
        assert_eq!(gap.status(), StatusCode::CONFLICT);
        assert_eq!(gap.headers()[OFFSET_HEADER], "5");
        let bad = piece(&headers("-1", false), 5, b"x", "stdin")
            .err()
            .expect("refused");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            piece(&HeaderMap::new(), 7, b"ab", "stdin")
                .expect("taken")
                .fresh,
            b"ab"
        );
    }
}
