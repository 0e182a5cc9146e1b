//! This machine's programs and `sh` command lines: finding a program on PATH, quoting a
//! word for a shell.

use std::path::{Path, PathBuf};

/// `program` on this process's PATH, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// `'…'` around anything but plain words, so that `sh` reads it back as one word.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_keeps_words_and_quotes_the_rest() {
        assert_eq!(super::quote("status"), "status");
        assert_eq!(super::quote("a b"), "'a b'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
        assert_eq!(super::quote(""), "''");
        assert_eq!(super::quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
