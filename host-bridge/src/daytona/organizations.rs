//! Daytona's organizations at sign-in: which ones the credentials reach, and the choice
//! among them.
//!
//! Daytona (v0.190.0) lists every organization of the key's *user* at `GET /organizations`,
//! whatever the key, but an API key acts only in the one it is bound to (the
//! `X-Daytona-Organization-ID` header is read only with a JWT), and `GET
//! /organizations/{id}` answers 403 for another one. So the organizations a key reaches
//! are the listed ones that `GET /organizations/{id}` answers: one for an API key, every
//! one of them for a user's token.
//!
//! [`choose`] takes the one asked for (`--organization ID|NAME`), else the only one, else
//! asks on a terminal; without a terminal it refuses with the list. None at all is an
//! error that says so.

use std::io::{BufRead, Write};

use anyhow::bail;
use serde::Deserialize;

use super::client::{url_encode, Daytona};
use super::error::DaytonaError;

/// `Organization`, the parts agentbox reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Id (sent as `X-Daytona-Organization-ID`).
    pub id: String,
    /// Its name, as the dashboard shows it.
    pub name: String,
    /// The user's personal organization.
    #[serde(default)]
    pub personal: bool,
}

impl Organization {
    /// `name (id)`, cleaned for a terminal.
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            crate::text::clean_text(&self.name, 60),
            crate::text::clean_text(&self.id, 60)
        )
    }
}

impl Daytona {
    /// `GET /organizations`: every organization of the key's user.
    pub async fn list_organizations(&self) -> Result<Vec<Organization>, DaytonaError> {
        self.call(true, &|| {
            self.request(reqwest::Method::GET, "/organizations")
        })
        .await
    }

    /// `GET /organizations/{id}`; `None` when these credentials cannot act there (403,
    /// 404).
    pub async fn organization(&self, id: &str) -> Result<Option<Organization>, DaytonaError> {
        let path = format!("/organizations/{}", url_encode(id));
        match self
            .call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(DaytonaError::Forbidden(_) | DaytonaError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The organizations these credentials can act in, in Daytona's order.
    pub async fn reachable_organizations(&self) -> Result<Vec<Organization>, DaytonaError> {
        let mut reached = Vec::new();
        for org in self.list_organizations().await? {
            if self.organization(&org.id).await?.is_some() {
                reached.push(org);
            }
        }
        Ok(reached)
    }
}

/// The one of `orgs` that `wanted` names (its id, or its name ignoring case), or why none.
pub fn find<'o>(orgs: &'o [Organization], wanted: &str) -> anyhow::Result<&'o Organization> {
    if let Some(o) = orgs.iter().find(|o| o.id == wanted) {
        return Ok(o);
    }
    let named: Vec<&Organization> = orgs
        .iter()
        .filter(|o| o.name.eq_ignore_ascii_case(wanted))
        .collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "`{}` is none of the Daytona organizations this key reaches: {}",
            crate::text::clean_text(wanted, 60),
            listing(orgs)
        ),
        several => bail!(
            "several Daytona organizations are named `{}`: give the id of one ({})",
            crate::text::clean_text(wanted, 60),
            listing(&several.iter().map(|o| (*o).clone()).collect::<Vec<_>>())
        ),
    }
}

/// `a (id-a), b (id-b)`.
fn listing(orgs: &[Organization]) -> String {
    orgs.iter()
        .map(Organization::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The organization to sign in to: `wanted` (an id or name, refused with the list when it
/// names none), else the only one, else — on a terminal — asked (`saved` the default),
/// else `saved` when it is one of them, else refused with the list.
pub fn choose(
    orgs: &[Organization],
    wanted: Option<&str>,
    saved: Option<&str>,
    interactive: bool,
) -> anyhow::Result<Organization> {
    if orgs.is_empty() {
        bail!("Daytona lists no organization this key can act in: check the key on the dashboard's Keys page (or ask to be added to an organization)");
    }
    if let Some(w) = wanted {
        return find(orgs, w).cloned();
    }
    if let [one] = orgs {
        return Ok(one.clone());
    }
    let saved_index = saved.and_then(|s| orgs.iter().position(|o| o.id == s));
    if interactive {
        return ask(orgs, saved_index.unwrap_or(0));
    }
    match saved_index {
        Some(i) => Ok(orgs[i].clone()),
        None => bail!(
            "this key reaches several Daytona organizations: choose one with --organization ID|NAME ({})",
            listing(orgs)
        ),
    }
}

/// Asks on the terminal (stderr, a line of stdin) until a number or a name of one is
/// given; Enter takes `default`.
fn ask(orgs: &[Organization], default: usize) -> anyhow::Result<Organization> {
    eprintln!("This key reaches several Daytona organizations; where should boxes run?");
    for (i, o) in orgs.iter().enumerate() {
        let mark = if i == default { "*" } else { " " };
        eprintln!("  {mark}{}) {}", i + 1, o.describe());
    }
    loop {
        eprint!(
            "choose 1-{} [{}]: ",
            orgs.len(),
            crate::text::clean_text(&orgs[default].name, 60)
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no answer (end of input): give --organization ID|NAME");
        }
        let a = line.trim();
        if a.is_empty() {
            return Ok(orgs[default].clone());
        }
        let by_number = a
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| orgs.get(i));
        match by_number.map_or_else(|| find(orgs, a), Ok) {
            Ok(o) => return Ok(o.clone()),
            Err(e) => eprintln!("{e}; a number from 1 to {}, or a name", orgs.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{choose, Organization};

    fn org(id: &str, name: &str) -> Organization {
        Organization {
            id: id.into(),
            name: name.into(),
            personal: false,
        }
    }

    #[test]
    fn the_choice_is_the_named_one_the_only_one_or_the_saved_one() {
        let two = [org("o-1", "Personal"), org("o-2", "Acme")];
        assert_eq!(
            choose(&two, Some("acme"), None, false).expect("chosen").id,
            "o-2"
        );
        assert_eq!(
            choose(&two, Some("o-1"), None, false).expect("chosen").id,
            "o-1"
        );
        let wrong = choose(&two, Some("Globex"), None, false)
            .expect_err("refused")
            .to_string();
        assert!(wrong.contains("Personal (o-1), Acme (o-2)"), "{wrong}");
        let several = choose(&two, None, None, false)
            .expect_err("refused")
            .to_string();
        assert!(several.contains("--organization"), "{several}");
        assert_eq!(
            choose(&two, None, Some("o-2"), false).expect("chosen").id,
            "o-2"
        );
        assert_eq!(
            choose(&two[..1], None, None, false).expect("chosen").id,
            "o-1"
        );
        let none = choose(&[], None, None, false)
            .expect_err("refused")
            .to_string();
        assert!(none.contains("no organization"), "{none}");
        let twins = [org("o-1", "Acme"), org("o-2", "acme")];
        let ambiguous = choose(&twins, Some("ACME"), None, false)
            .expect_err("refused")
            .to_string();
        assert!(ambiguous.contains("give the id"), "{ambiguous}");
    }
}
