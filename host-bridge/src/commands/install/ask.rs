//! The wizard's questions: asked on stderr, answered by a line of stdin. End of input is
//! an error that says how to answer without a terminal, never a silent default.

use std::io::{BufRead, Write};

use anyhow::{bail, Context};

/// Reads one answer line (without its end); end of input is an error.
fn answer(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    if n == 0 {
        bail!("no answer (end of input): run `agentbox install -y` with flags to answer without a terminal");
    }
    Ok(line.trim().to_string())
}

/// A yes/no question; Enter takes `default`. Asked again until the answer is one of
/// y, yes, n, no.
pub fn yes_no(question: &str, default: bool) -> anyhow::Result<bool> {
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    loop {
        let a = answer(&format!("{question} {hint} "))?.to_ascii_lowercase();
        match a.as_str() {
            "" => return Ok(default),
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => eprintln!("answer y or n"),
        }
    }
}

/// One of `choices` (by number or name); Enter takes `default` (an index into it).
pub fn choose(question: &str, choices: &[(&str, &str)], default: usize) -> anyhow::Result<String> {
    eprintln!("{question}");
    for (i, (name, help)) in choices.iter().enumerate() {
        let mark = if i == default { "*" } else { " " };
        eprintln!("  {mark}{}) {name:<8} {help}", i + 1);
    }
    loop {
        let a = answer(&format!(
            "choose 1-{} [{}]: ",
            choices.len(),
            choices[default].0
        ))?;
        if a.is_empty() {
            return Ok(choices[default].0.to_string());
        }
        let picked = a
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| choices.get(i))
            .or_else(|| {
                choices
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&a))
            });
        match picked {
            Some((name, _)) => return Ok((*name).to_string()),
            None => eprintln!(
                "`{}` is not one of them: a number from 1 to {}, or a name",
                crate::text::clean_text(&a, 40),
                choices.len()
            ),
        }
    }
}
