//! The check of the addresses an invite carries ([`check_url`]): an invite comes from
//! another person's machine, and its addresses are what `agentbox join` calls and
//! `agentbox url` prints.

/// Checks an address an invite carries: printable ASCII only (nothing a terminal would
/// take for a control sequence when `agentbox url` prints it), `http(s)://`, no userinfo
/// (`http://127.0.0.1:80@elsewhere/` names another host than it seems to), a host; plain
/// `http` only to this machine's loopback, and with `loopback_only` (a docker or local
/// box's relay, reachable only on its owner's machine) nothing but the loopback.
pub(super) fn check_url(url: &str, loopback_only: bool) -> Result<(), &'static str> {
    if url.len() >= 2048 || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("is not an http(s) URL of printable characters");
    }
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err("is not an http(s) URL"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains(['@', '\\']) {
        return Err("carries a user name (`…@host`): an invite's address never does");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err("names no host");
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback_only && !loopback {
        return Err("is not on the loopback (127.0.0.1), where a docker or local box's relay is");
    }
    if !https && !loopback {
        return Err("is plain http to another machine: only https leaves this one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Invite, RelayAddress, Scope, ShareError, ShareId, ShareToken};

    #[test]
    fn an_invites_screen_address_is_checked_like_its_web_address() {
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
}
