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
