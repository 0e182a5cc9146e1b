//! A sandbox's toolbox (`{toolboxProxyUrl}/{sandboxId}/…`): files up and down
//! (`files/upload`, `files/download`; a private file replaced whole through a partial one
//! renamed over it) and commands (`process/execute`), with Daytona's auth headers and the
//! client's retries. The box writes what these answer: each is read
//! under a cap ([`EXECUTE_CAP`], [`FILE_CAP`]).

use serde::{Deserialize, Serialize};

use super::client::{url_encode, Daytona};
use super::error::DaytonaError;
use super::sandbox::Sandbox;

/// The most of a command's answer (`process/execute`: its output, which the box writes)
/// that is read; a longer one is [`DaytonaError::TooLarge`].
pub const EXECUTE_CAP: usize = 16 << 20;
/// The most of a file from the box (`files/download`) that is read.
pub const FILE_CAP: usize = 64 << 20;

/// `ExecuteResponse` of the toolbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Executed {
    /// The exit code (`-1`: it could not start).
    pub exit_code: i32,
    /// stdout and stderr together.
    pub result: String,
}

/// `ExecuteRequest` of the toolbox: an absent field is left out, not `null` (the spec
/// types `cwd` as a string; Daytona's daemon takes no `null` for it).
#[derive(Debug, Serialize)]
struct ExecuteRequest<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<&'a str>,
}

impl Daytona {
    /// `{toolboxProxyUrl}/{sandboxId}/{rest}`, when the sandbox has a toolbox address and
    /// it may be used ([`Daytona::handed_url`]).
    fn toolbox_url(&self, sandbox: &Sandbox, rest: &str) -> Result<String, DaytonaError> {
        let toolbox = sandbox.toolbox_proxy_url.as_deref().ok_or_else(|| {
            DaytonaError::Invalid(format!("sandbox {} has no toolbox address", sandbox.id))
        })?;
        let toolbox = self.handed_url(toolbox, "the toolbox URL Daytona gave")?;
        Ok(format!(
            "{}/{}/{rest}",
            toolbox.trim_end_matches('/'),
            sandbox.id
        ))
    }

    /// Writes `bytes` to `path` in the sandbox through the toolbox (`files/upload`,
    /// multipart), as the sandbox's user: the content never appears in a command line.
    pub async fn upload_file(
        &self,
        sandbox: &Sandbox,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), DaytonaError> {
        let url = self.toolbox_url(sandbox, &format!("files/upload?path={}", url_encode(path)))?;
        // Writing the same bytes again is harmless: retried like an idempotent call.
        self.call_no_body(true, &|| {
            let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name("file");
            self.request_url(reqwest::Method::POST, &url)
                .multipart(reqwest::multipart::Form::new().part("file", part))
        })
        .await
    }

    /// Writes `bytes` as file `name` of directory `dir` in the sandbox, whole or not at
    /// all: uploaded beside it as `.<name>.partial`, made 0600 and renamed over the old one
    /// (rename(2)), so an upload cut off midway never leaves half of it where it is read.
    /// The partial file's name is fixed: one left by an interrupted upload is overwritten
    /// by the next.
    pub async fn replace_private_file(
        &self,
        sandbox: &Sandbox,
        dir: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        let dest = format!("{dir}/{name}");
        let partial = format!("{dir}/.{name}.partial");
        self.upload_file(sandbox, &partial, bytes).await?;
        let (partial_q, dest_q) = (crate::shell::quote(&partial), crate::shell::quote(&dest));
        let done = self
            .execute(
                sandbox,
                &format!("chmod 600 {partial_q} && mv -f -- {partial_q} {dest_q}"),
                None,
            )
            .await?;
        if done.exit_code != 0 {
            anyhow::bail!(
                "moving it into place failed (exit {}): {}",
                done.exit_code,
                crate::text::clean_text(done.result.trim(), 200)
            );
        }
        Ok(())
    }

    /// The bytes of file `path` in the sandbox (the toolbox's `GET files/download`).
    pub async fn download_file(
        &self,
        sandbox: &Sandbox,
        path: &str,
    ) -> Result<Vec<u8>, DaytonaError> {
        let url = self.toolbox_url(
            sandbox,
            &format!("files/download?path={}", url_encode(path)),
        )?;
        let bytes = self
            .call_raw_capped(true, FILE_CAP, &|| {
                self.request_url(reqwest::Method::GET, &url)
            })
            .await?;
        Ok(bytes.to_vec())
    }

    /// Runs `command` through a shell in the sandbox (the toolbox's `process/execute`),
    /// in `cwd`; never repeated on an ambiguous failure (it may have run).
    pub async fn execute(
        &self,
        sandbox: &Sandbox,
        command: &str,
        cwd: Option<&str>,
    ) -> Result<Executed, DaytonaError> {
        let url = self.toolbox_url(sandbox, "process/execute")?;
        let body = ExecuteRequest { command, cwd };
        self.call_capped(false, EXECUTE_CAP, &|| {
            self.request_url(reqwest::Method::POST, &url).json(&body)
        })
        .await
    }
}
