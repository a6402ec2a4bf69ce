//! One-line human messages about an outcome, for stderr (`safe-exec: ...`), the JSON `error`
//! field and other front ends.

use super::{Outcome, Status};
use crate::limits::{human_bytes, human_secs};

/// The message for any status but `ok`, without a `safe-exec:` prefix: what the JSON `error`
/// field says.
pub fn status_message(outcome: &Outcome) -> Option<String> {
    let limits = &outcome.limits;
    match outcome.status {
        Status::Ok => None,
        Status::RuntimeError => Some(match (outcome.signal, outcome.exit_code) {
            (Some(signal), _) => {
                format!(
                    "the program was killed by signal {signal} ({})",
                    crate::signals::name(signal)
                )
            }
            (None, Some(code)) => format!("the program exited with code {code}"),
            (None, None) => "the program failed".to_owned(),
        }),
        Status::Timeout => Some(
            match outcome.cpu_time {
                Some(cpu) if crate::runner::rules::over(cpu, limits.timeout) => format!(
                    "time limit exceeded ({} of CPU time): the program was killed",
                    human_secs(limits.timeout)
                ),
                Some(cpu) => format!(
                    "time limit exceeded ({} of wall-clock time, {} of CPU time used): the program was killed",
                    human_secs(limits.wall_timeout),
                    human_secs(cpu)
                ),
                None => format!(
                    "time limit exceeded ({} of wall-clock time): the program was killed",
                    human_secs(limits.wall_timeout)
                ),
            },
        ),
        Status::MemoryLimit => Some(format!(
            "memory limit exceeded ({}): the program was killed by the kernel's OOM killer",
            human_bytes(limits.memory_bytes)
        )),
        Status::OutputLimit => Some(format!(
            "output limit exceeded: {} passed {} and the program was stopped",
            outcome
                .output_limit_stream
                .map_or("output", |stream| stream.name()),
            human_bytes(limits.max_output_bytes)
        )),
        Status::Rejected | Status::SandboxError | Status::Interrupted => outcome.error.clone(),
    }
}

/// The full line for stderr in text mode, or `None` when there is nothing to add: a plain
/// non-zero exit says nothing more, as the program's own stderr already explains it and the exit
/// code passes through.
pub fn describe(outcome: &Outcome) -> Option<String> {
    if outcome.status == Status::RuntimeError && outcome.signal.is_none() {
        return None;
    }
    status_message(outcome).map(|message| format!("safe-exec: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::report::Stream;

    #[test]
    fn messages_name_the_limit() {
        let limits = Limits::default();
        let on_cpu = Outcome {
            cpu_time: Some(std::time::Duration::from_millis(10_001)),
            ..Outcome::not_run(Status::Timeout, "", limits)
        };
        assert_eq!(
            describe(&on_cpu).unwrap(),
            "safe-exec: time limit exceeded (10 s of CPU time): the program was killed"
        );
        let waiting = Outcome {
            cpu_time: Some(std::time::Duration::from_millis(30)),
            ..Outcome::not_run(Status::Timeout, "", limits)
        };
        assert_eq!(
            describe(&waiting).unwrap(),
            "safe-exec: time limit exceeded (21 s of wall-clock time, 0.03 s of CPU time used): the program was killed"
        );
        let unreported = Outcome::not_run(Status::Timeout, "", limits);
        assert!(describe(&unreported)
            .unwrap()
            .contains("21 s of wall-clock time)"));
        let memory = Outcome::not_run(Status::MemoryLimit, "", limits);
        assert!(describe(&memory).unwrap().contains("128 MiB"));
        let output = Outcome {
            output_limit_stream: Some(Stream::Stderr),
            ..Outcome::not_run(Status::OutputLimit, "", limits)
        };
        assert!(describe(&output).unwrap().contains("stderr passed 1 MiB"));
        let segfault = Outcome {
            signal: Some(11),
            ..Outcome::not_run(Status::RuntimeError, "", limits)
        };
        assert!(describe(&segfault).unwrap().contains("SIGSEGV"));
        let plain = Outcome {
            exit_code: Some(1),
            error: None,
            ..Outcome::not_run(Status::RuntimeError, "", limits)
        };
        assert_eq!(describe(&plain), None);
    }
}
