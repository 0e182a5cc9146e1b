//! How a refusal from the box's side reads to the user: the message that says what was
//! wrong and what to do, never an HTTP status in parentheses at its end.

/// What a refusal with `status` and `message` tells the user: the message alone when
/// there is one (the relay's messages say what to do; a status would add nothing a user
/// can act on); without one, the status and what to check.
pub fn refusal(status: reqwest::StatusCode, message: &str) -> String {
    if message.trim().is_empty() {
        format!(
            "the box answered HTTP {} without saying why: check it with `agentbox status` and try again",
            status.as_u16()
        )
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use reqwest::StatusCode;

    #[test]
    fn a_refusal_says_what_to_do_not_which_status() {
        let said = refusal(
            StatusCode::CONFLICT,
            "/w/new/: the destination directory does not exist: create it first",
        );
        assert_eq!(
            said,
            "/w/new/: the destination directory does not exist: create it first"
        );
        let bare = refusal(StatusCode::BAD_GATEWAY, " ");
        assert!(
            bare.contains("HTTP 502") && bare.contains("`agentbox status`"),
            "{bare}"
        );
        for s in [&said, &bare] {
            assert!(!s.ends_with(')'), "{s}");
        }
    }
}
