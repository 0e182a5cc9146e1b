//! `agentbox-ctl gh pr create|view|list` (what the `gh` shim calls): the box holds no
//! GitHub credentials, so these are typed requests the host runs with its own `gh`, for
//! the box's branch. Nothing else of gh crosses over.

use std::process::ExitCode;
use std::time::Duration;

use agentbox_protocol::bridge::{GhRequest, HostRequest};

use crate::paths::Paths;

fn refuse(message: &str) -> ExitCode {
    eprintln!("agentbox-ctl gh: {message}");
    ExitCode::from(1)
}

/// Takes the value of a flag given as `--flag V` or `--flag=V`.
fn value<'a>(args: &'a [String], i: &mut usize, names: &[&str]) -> Result<Option<&'a str>, String> {
    let a = args[*i].as_str();
    for n in names {
        if a == *n {
            *i += 1;
            return args
                .get(*i)
                .map(|v| Some(v.as_str()))
                .ok_or_else(|| format!("`{n}` needs a value"));
        }
        if let Some(v) = a.strip_prefix(n).and_then(|r| r.strip_prefix('=')) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Parses `gh pr …` into a request; the error says what is not carried.
pub fn parse(args: &[String]) -> Result<GhRequest, String> {
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    let rest = args.get(2..).unwrap_or(&[]);
    match words[..] {
        ["pr", "create"] => {
            let (mut title, mut body, mut base, mut draft) = (None, None, None, false);
            let mut i = 0;
            while i < rest.len() {
                if let Some(v) = value(rest, &mut i, &["--title", "-t"])? {
                    title = Some(v.to_string());
                } else if let Some(v) = value(rest, &mut i, &["--body", "-b"])? {
                    body = Some(v.to_string());
                } else if let Some(v) = value(rest, &mut i, &["--base", "-B"])? {
                    base = Some(v.to_string());
                } else if rest[i] == "--draft" || rest[i] == "-d" {
                    draft = true;
                } else {
                    return Err(format!(
                        "`{}` is not carried to the host: gh pr create takes --title, --body, --base and --draft",
                        rest[i]
                    ));
                }
                i += 1;
            }
            Ok(GhRequest::PrCreate {
                title: title.ok_or("gh pr create needs --title")?,
                body: body.unwrap_or_default(),
                base,
                draft,
            })
        }
        ["pr", "view"] => match rest {
            [] => Ok(GhRequest::PrView { number: None }),
            [n] => n
                .trim_start_matches('#')
                .parse()
                .map(|n| GhRequest::PrView { number: Some(n) })
                .map_err(|_| format!("`{n}` is not a pull request number")),
            _ => Err("gh pr view takes at most a number".into()),
        },
        ["pr", "list"] => {
            let (mut state, mut limit) = (None, None);
            let mut i = 0;
            while i < rest.len() {
                if let Some(v) = value(rest, &mut i, &["--state", "-s"])? {
                    state = Some(v.to_string());
                } else if let Some(v) = value(rest, &mut i, &["--limit", "-L"])? {
                    limit = Some(v.parse().map_err(|_| format!("`{v}` is not a number"))?);
                } else {
                    return Err(format!(
                        "`{}` is not carried to the host: gh pr list takes --state and --limit",
                        rest[i]
                    ));
                }
                i += 1;
            }
            Ok(GhRequest::PrList { state, limit })
        }
        _ => Err(format!(
            "`gh {}` is not carried to the host: only `gh pr create|view|list` are",
            args.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
        )),
    }
}

/// `agentbox-ctl gh …`.
pub fn run(paths: &Paths, args: &[String]) -> ExitCode {
    match parse(args) {
        Ok(request) => crate::host::submit(
            &paths.run_dir,
            HostRequest::Gh(request),
            crate::host::Wait::Follow(Duration::from_secs(30 * 60)),
        ),
        Err(e) => refuse(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn only_pr_create_view_list_with_known_flags() {
        assert_eq!(
            parse(&args(&["pr", "create", "-t", "T", "--body=B", "--draft"])).expect("ok"),
            GhRequest::PrCreate {
                title: "T".into(),
                body: "B".into(),
                base: None,
                draft: true
            }
        );
        assert_eq!(
            parse(&args(&["pr", "view", "#7"])).expect("ok"),
            GhRequest::PrView { number: Some(7) }
        );
        for bad in [
            &["pr", "create", "--repo", "evil/x", "-t", "T"][..],
            &["pr", "create"],
            &["pr", "merge", "1"],
            &["api", "repos"],
            &["pr", "view", "main"],
            &["pr", "list", "--json", "x"],
            &["auth", "token"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
