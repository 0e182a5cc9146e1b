//! A closed stdout or stderr ends a binary quietly (feature `logging`, the binaries' setup).
//!
//! Rust ignores SIGPIPE, so `println!` into a pipe whose reader has gone (`agentbox list |
//! head -1`) panics with a backtrace. [`exit_quietly`] turns exactly that panic into the
//! exit a shell expects of a program whose reader left (status 141, as after SIGPIPE),
//! without restoring SIGPIPE itself: a daemon's write to a closed socket or child pipe
//! stays an error it handles.

/// The exit status of a program stopped by SIGPIPE (128 + 13), as shells report it.
pub const CLOSED_PIPE_STATUS: i32 = 141;

/// Whether a panic message is the standard print macros failing on a closed pipe.
fn is_closed_pipe_print(message: &str) -> bool {
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && message.contains("Broken pipe")
}

/// Installs a panic hook that exits with [`CLOSED_PIPE_STATUS`], printing nothing, when
/// `print!`/`println!`/`eprint!`/`eprintln!` fail because the reader of stdout or stderr
/// has gone; every other panic is reported as before. Call it first thing in `main`.
pub fn exit_quietly() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_pipe_print(message) {
            std::process::exit(CLOSED_PIPE_STATUS);
        }
        report(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::is_closed_pipe_print;

    #[test]
    fn only_print_failures_on_a_closed_pipe_count() {
        assert!(is_closed_pipe_print(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(is_closed_pipe_print(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_pipe_print(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_pipe_print("write: Broken pipe (os error 32)"));
    }
}
