//! Signals to safe-exec itself, handled the same way by every subcommand.
//!
//! SIGINT, SIGTERM and SIGHUP stop safe-exec in two stages: the first asks for an orderly stop
//! (cancel the runs, remove their containers, write what must be written), the second means "now":
//! the caller removes what is left without waiting and exits 128+N. This module only routes the
//! signals to the two callbacks, on a thread of its own; what a stage does (and whether the
//! process exits) is the caller's business.

use libc::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signals that stop safe-exec.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Call `first` with the first of [`STOP_SIGNALS`] that arrives and `second` with the next one.
/// Installed before this returns, so a signal sent right after is never lost or fatal.
pub fn on_stop_signals(
    first: impl FnOnce(i32) + Send + 'static,
    second: impl FnOnce(i32) + Send + 'static,
) -> std::io::Result<()> {
    let mut signals = Signals::new(STOP_SIGNALS)?;
    std::thread::Builder::new()
        .name("safe-exec-signals".into())
        .spawn(move || {
            let mut arriving = signals.forever();
            if let Some(signal) = arriving.next() {
                first(signal);
            }
            if let Some(signal) = arriving.next() {
                second(signal);
            }
        })?;
    Ok(())
}

/// The conventional name of `signal` (`SIGSEGV`), for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_platform_s_numbers() {
        assert_eq!(name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(name(libc::SIGKILL), "SIGKILL");
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(1000), "unknown signal");
    }
}
