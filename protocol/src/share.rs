//! Sharing a box with a teammate: scoped, expiring share tokens the relay mints for the
//! owner's host (`/v1/shares`), and the invite `agentbox share` prints and `agentbox join`
//! reads.
//!
//! A share token is never the bridge token: the relay accepts it only on the routes of its
//! [`Scope`]s (terminal viewing, terminal input with [`Scope::AttachWrite`], logs), never
//! on the bridge API, files, exec, seed/sync, tunnels or share management. The relay keeps
//! only its blake3 hash.
//!
//! An [`Invite`] is one copy-pasteable string, `abx1_` + base64url (no padding) of its
//! JSON; [`Invite::decode`] checks every field it carries.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

mod address;

use address::check_url;

/// What a share token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// View the box's terminal sessions (tmux `attach -r`).
    #[serde(rename = "attach:read")]
    AttachRead,
    /// Type into them too.
    #[serde(rename = "attach:write")]
    AttachWrite,
    /// The box's web address (its WebProxy) travels in the invite.
    #[serde(rename = "url")]
    Url,
    /// Read the units' logs (`/v1/logs`).
    #[serde(rename = "logs")]
    Logs,
}

impl Scope {
    /// The name on the wire and in messages (`attach:read`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttachRead => "attach:read",
            Self::AttachWrite => "attach:write",
            Self::Url => "url",
            Self::Logs => "logs",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The scopes of a share, sorted and without repeats; writing implies reading.
pub fn normalize_scopes(scopes: &[Scope]) -> Vec<Scope> {
    let mut all: Vec<Scope> = scopes.to_vec();
    if all.contains(&Scope::AttachWrite) {
        all.push(Scope::AttachRead);
    }
    all.sort();
    all.dedup();
    all
}

/// Why a share id, token or invite was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not a share id.
    #[error("`{0}` is not a share id (sh- and 16 lowercase hex digits, as `agentbox share --list` shows)")]
    BadId(String),
    /// Not a share token.
    #[error("that is not a share token")]
    BadToken,
    /// Not an invite.
    #[error("not an agentbox invite: {0}")]
    BadInvite(String),
}

/// A share's id (`sh-` + 16 lowercase hex digits): what `--list` shows and `--revoke`
/// takes. Made only by [`ShareId::parse`] (serde goes through it) or [`ShareId::generate`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShareId(String);

impl ShareId {
    /// The one validating constructor.
    pub fn parse(s: &str) -> Result<Self, ShareError> {
        let hex = s.strip_prefix("sh-").unwrap_or("");
        if hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_string()))
        } else {
            Err(ShareError::BadId(shown_short(s)))
        }
    }

    /// A new random id.
    pub fn generate() -> std::io::Result<Self> {
        let hex = crate::token::new_bridge_token()?;
        Ok(Self(format!("sh-{}", &hex[..16])))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ShareId {
    type Error = ShareError;
    fn try_from(s: String) -> Result<Self, ShareError> {
        Self::parse(&s)
    }
}

impl From<ShareId> for String {
    fn from(id: ShareId) -> String {
        id.0
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A share token: `abxs_` + 64 lowercase hex digits. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShareToken(String);

/// The prefix of every share token (a bridge token never has it).
pub const TOKEN_PREFIX: &str = "abxs_";

impl ShareToken {
    /// The one validating constructor.
    pub fn parse(s: &str) -> Result<Self, ShareError> {
        let hex = s.strip_prefix(TOKEN_PREFIX).ok_or(ShareError::BadToken)?;
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_string()))
        } else {
            Err(ShareError::BadToken)
        }
    }

    /// A new random token.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self(format!(
            "{TOKEN_PREFIX}{}",
            crate::token::new_bridge_token()?
        )))
    }

    /// The token as sent in `x-agentbox-token`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The blake3 hash (hex) the relay keeps instead of the token.
    pub fn hash(&self) -> String {
        blake3::hash(self.0.as_bytes()).to_hex().to_string()
    }
}

impl fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareToken(…)")
    }
}

impl TryFrom<String> for ShareToken {
    type Error = ShareError;
    fn try_from(s: String) -> Result<Self, ShareError> {
        Self::parse(&s)
    }
}

impl From<ShareToken> for String {
    fn from(t: ShareToken) -> String {
        t.0
    }
}

/// The longest a share lives (30 days).
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// Shares one relay keeps at once.
pub const MAX_SHARES: usize = 64;

/// `POST /v1/shares`: mint a share token (bridge token only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMint {
    /// What it allows (at least one).
    pub scopes: Vec<Scope>,
    /// How long it lives, 1 ms to [`MAX_TTL_MS`].
    pub ttl_ms: u64,
}

/// A share as `GET /v1/shares` lists it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// Its id.
    pub id: ShareId,
    /// What it allows.
    pub scopes: Vec<Scope>,
    /// When it was minted (the box's clock).
    pub created_at_ms: EpochMillis,
    /// When it stops working (the box's clock).
    pub expires_at_ms: EpochMillis,
}

/// The answer to a mint: the share and, this once, its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareGrant {
    /// The share.
    pub info: ShareInfo,
    /// Its token (the relay keeps only its hash).
    pub token: ShareToken,
}

/// `POST /v1/logs` (scope `logs`): the units' logs as `agentbox-ctl logs --json` prints
/// them, streamed as exec frames. The relay builds the command line itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Each unit's latest lines (`-n`), at most 100 000.
    pub tail: u32,
    /// Follow (`-f`).
    #[serde(default)]
    pub follow: bool,
    /// Only lines of the last this many milliseconds (`--since-ms`).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// One unit (else all).
    #[serde(default)]
    pub unit: Option<String>,
}

impl LogsQuery {
    /// Checks the unit name (1–64 of letters, digits, `._-`, not starting with `-`) and
    /// the tail.
    pub fn validate(&self) -> Result<(), String> {
        if self.tail > 100_000 {
            return Err(format!("tail {} is over 100000", self.tail));
        }
        if let Some(u) = &self.unit {
            let ok = (1..=64).contains(&u.len())
                && !u.starts_with('-')
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(format!("`{}` is not a unit name", shown_short(u)));
            }
        }
        Ok(())
    }
}

/// How the teammate's host reaches the box's relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayAddress {
    /// Docker and local boxes: the relay's URL on the owner's loopback.
    Loopback {
        /// `http://127.0.0.1:PORT`.
        url: String,
    },
    /// A Daytona sandbox: the preview URL of the relay's port.
    Daytona {
        /// The sandbox id.
        sandbox_id: String,
        /// The preview URL of the relay's port (a signed one carries its own token).
        url: String,
        /// The preview token to send as `x-daytona-preview-token`, when the URL needs one.
        #[serde(default)]
        preview_token: Option<String>,
    },
}

impl RelayAddress {
    /// The relay's base URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Loopback { url } | Self::Daytona { url, .. } => url,
        }
    }
}

/// What `agentbox share` prints and `agentbox join` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// `local`, `docker` or `daytona`.
    pub provider: String,
    /// The box's name on the owner's machine.
    pub box_name: String,
    /// How to reach the relay.
    pub relay: RelayAddress,
    /// The box's WebProxy (its services' web address), with scope `url`.
    #[serde(default)]
    pub web_url: Option<String>,
    /// The box's screen (noVNC's page, `agentbox screen`), with scope `url`, when the box
    /// has one: under the WebProxy on docker, a signed preview link of port 6080 on
    /// Daytona.
    #[serde(default)]
    pub screen_url: Option<String>,
    /// The share's id.
    pub share_id: ShareId,
    /// The share token.
    pub token: ShareToken,
    /// What it allows.
    pub scopes: Vec<Scope>,
    /// When it stops working.
    pub expires_at_ms: EpochMillis,
}

/// The prefix of an invite string.
pub const INVITE_PREFIX: &str = "abx1_";
/// The longest invite accepted.
pub const MAX_INVITE_LEN: usize = 16 << 10;

impl Invite {
    /// `abx1_` + base64url of the JSON.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{INVITE_PREFIX}{}", b64url_encode(&json))
    }

    /// Reads an invite string (surrounding white space ignored) and checks every field.
    pub fn decode(s: &str) -> Result<Self, ShareError> {
        let bad = |m: &str| ShareError::BadInvite(m.to_string());
        let s = s.trim();
        if s.len() > MAX_INVITE_LEN {
            return Err(bad("it is longer than any invite"));
        }
        let body = s.strip_prefix(INVITE_PREFIX).ok_or_else(|| {
            bad("an invite starts with `abx1_` (copy all of what `agentbox share` printed)")
        })?;
        let json =
            b64url_decode(body).ok_or_else(|| bad("it is cut or altered (not base64url)"))?;
        let invite: Self = serde_json::from_slice(&json)
            .map_err(|e| ShareError::BadInvite(format!("its content is not an invite ({e})")))?;
        invite.check()?;
        Ok(invite)
    }

    fn check(&self) -> Result<(), ShareError> {
        let bad = |m: String| Err(ShareError::BadInvite(m));
        if !matches!(self.provider.as_str(), "local" | "docker" | "daytona") {
            return bad(format!(
                "unknown provider `{}`",
                shown_short(&self.provider)
            ));
        }
        let name = self.box_name.as_bytes();
        let name_ok = (1..=63).contains(&name.len())
            && name[0].is_ascii_alphanumeric()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !name_ok {
            return bad(format!(
                "`{}` is not a box name",
                shown_short(&self.box_name)
            ));
        }
        let loopback_only = matches!(self.relay, RelayAddress::Loopback { .. });
        let web = self.web_url.as_deref().into_iter();
        for url in std::iter::once(self.relay.url()).chain(web.chain(self.screen_url.as_deref())) {
            if let Err(why) = check_url(url, loopback_only) {
                return bad(format!("`{}` {why}", shown_short(url)));
            }
        }
        if let RelayAddress::Daytona {
            sandbox_id,
            preview_token,
            ..
        } = &self.relay
        {
            let plain = |s: &str| {
                (1..=128).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            };
            if !plain(sandbox_id) || preview_token.as_deref().is_some_and(|t| !plain(t)) {
                return bad("its Daytona sandbox id or preview token is malformed".into());
            }
        }
        if self.scopes.is_empty() {
            return bad("it allows nothing".into());
        }
        Ok(())
    }
}

/// `s` cut to 80 characters with control characters escaped, for an error message.
fn shown_short(s: &str) -> String {
    s.chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// base64url without padding; `None` for anything else.
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = B64.iter().position(|&x| x == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Invite {
        Invite {
            provider: "docker".into(),
            box_name: "b1".into(),
            relay: RelayAddress::Loopback {
                url: "http://127.0.0.1:4000".into(),
            },
            web_url: Some("http://localhost:4001".into()),
            screen_url: None,
            share_id: ShareId::generate().expect("id"),
            token: ShareToken::generate().expect("token"),
            scopes: vec![Scope::AttachRead, Scope::Logs],
            expires_at_ms: 5,
        }
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(97)).collect();
            assert_eq!(b64url_decode(&b64url_encode(&bytes)), Some(bytes));
        }
        assert_eq!(b64url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("a"), None);
        assert_eq!(b64url_decode("a=="), None);
    }

    #[test]
    fn invites_round_trip_and_refuse_alterations() {
        let i = invite();
        let s = i.encode();
        assert!(s.starts_with("abx1_"));
        assert_eq!(Invite::decode(&format!("  {s}\n")), Ok(i.clone()));
        assert!(Invite::decode(&s[1..]).is_err());
        assert!(Invite::decode(&s[..s.len() - 3]).is_err());
        let mut bad = i.clone();
        bad.box_name = "../x".into();
        assert!(Invite::decode(&bad.encode()).is_err());
        let mut bad = i;
        bad.relay = RelayAddress::Loopback {
            url: "file:///etc".into(),
        };
        assert!(Invite::decode(&bad.encode()).is_err());
    }

    #[test]
    fn invites_pointing_elsewhere_than_they_seem_are_refused() {
        let with = |relay: RelayAddress, web: Option<&str>| {
            let mut i = invite();
            i.relay = relay;
            i.web_url = web.map(str::to_string);
            Invite::decode(&i.encode())
        };
        let lo = |url: &str| RelayAddress::Loopback { url: url.into() };
        let dt = |url: &str| RelayAddress::Daytona {
            sandbox_id: "sb-1".into(),
            url: url.into(),
            preview_token: None,
        };
        for (relay, web) in [
            // userinfo: the host is 10.0.0.5, not the loopback it seems
            (lo("http://127.0.0.1:4000@10.0.0.5:8788"), None),
            (dt("https://8788-x.proxy.daytona.works@evil.example/"), None),
            (
                dt("https://evil.example\\@8788-x.proxy.daytona.works/"),
                None,
            ),
            // a "docker" relay on the LAN
            (lo("http://192.168.1.20:8788"), None),
            (lo("https://relay.example"), None),
            (lo("http://127.0.0.1:4000"), Some("http://10.0.0.5:8080")),
            // plain http to another machine
            (dt("http://10.0.0.5:8788"), None),
            (
                dt("https://8788-x.proxy.example"),
                Some("http://8080-x.proxy.example"),
            ),
            // what a terminal takes for control sequences, or shows reordered
            (
                lo("http://127.0.0.1:4000"),
                Some("http://127.0.0.1:4001/\u{9b}2J"),
            ),
            (
                lo("http://127.0.0.1:4000"),
                Some("http://127.0.0.1:4001/\u{202e}gpj"),
            ),
            (
                lo("http://127.0.0.1:4000"),
                Some("http://127.0.0.1:4001/\x1b]8;;"),
            ),
            (lo("http://:4000"), None),
        ] {
            let shown = format!("{relay:?} {web:?}");
            assert!(
                matches!(with(relay, web), Err(ShareError::BadInvite(_))),
                "{shown}"
            );
        }
        for (relay, web) in [
            (lo("http://127.0.0.1:4000"), Some("http://127.0.0.1:4001")),
            (
                lo("http://localhost:4000/"),
                Some("https://app.b1.localhost:8443"),
            ),
            (lo("http://[::1]:4000"), None),
            (
                dt("https://8788-tok.proxy.daytona.works"),
                Some("https://8080-tok.proxy.daytona.works"),
            ),
            (dt("http://127.0.0.1:3999/_preview/8788-tok"), None),
        ] {
            let shown = format!("{relay:?} {web:?}");
            assert!(with(relay, web).is_ok(), "{shown}");
        }
    }

    #[test]
    fn ids_and_tokens_parse_only_when_well_formed() {
        let id = ShareId::generate().expect("id");
        assert_eq!(ShareId::parse(id.as_str()), Ok(id));
        for bad in [
            "",
            "sh-",
            "sh-0123456789abcdeF",
            "sh-0123456789abcdef0",
            "x",
        ] {
            assert!(ShareId::parse(bad).is_err(), "{bad}");
        }
        let t = ShareToken::generate().expect("token");
        assert_eq!(ShareToken::parse(t.expose()), Ok(t.clone()));
        assert!(ShareToken::parse(&t.expose()[1..]).is_err());
        assert!(!format!("{t:?}").contains("abxs_"));
        assert_eq!(
            serde_json::to_string(&Scope::AttachWrite).expect("json"),
            "\"attach:write\""
        );
        assert_eq!(
            normalize_scopes(&[Scope::Logs, Scope::AttachWrite, Scope::Logs]),
            vec![Scope::AttachRead, Scope::AttachWrite, Scope::Logs]
        );
    }
}
