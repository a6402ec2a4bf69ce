//! The outcome rules: a run's status as a pure function of what was observed.
//!
//! The supervisor gathers observations — how its wait ended, the launcher's verified end report,
//! what the engine said — and [`decide`] maps them to a [`Decision`]. Nothing here talks to the
//! engine, sleeps or reads a clock, so every rule is tested below as a table, each status and each
//! way the launcher, the engine and our own clock can disagree.
//!
//! The rules, in order:
//! 1. A verified end report decides: an OOM kill counted by the kernel → `memory_limit`; output
//!    past a cap → `output_limit`; CPU time over the time limit or wall-clock time over the
//!    backstop, **as reported, to the millisecond** → `timeout`; otherwise the program's own
//!    ending (exit 0 → `ok`, other exits and signals → `runtime_error`). A stop the launcher
//!    claims for a limit its own numbers (or, for the wall clock, our clock) do not show passed is
//!    not believed: `sandbox_error`.
//! 2. No report, our wall-clock backstop passed while the program ran → `timeout`, with our own
//!    measure of the time.
//! 3. No report and the container gone: the engine's OOM record → `memory_limit`; anything else is
//!    the sandbox's failure, never the program's (the program cannot reach its launcher).
//! 4. Cancellation → `interrupted`; the engine refusing a limit → `rejected`; other engine
//!    failures → `sandbox_error`.

use std::time::Duration;

use super::docker_cli::EngineError;
use super::launcher_report::{LauncherReport, ProgramEnd, ReportError, Stop};
use crate::limits::Limits;
use crate::report::{Status, Stream};
use crate::sanitize;

/// How far our clock may trail the launcher's and still agree that the wall-clock backstop
/// passed (the started frame reaches us a little after the program's fork).
pub const CLOCK_TOLERANCE: Duration = Duration::from_millis(500);

/// The container's state as the engine records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerState {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started: bool,
    pub running: bool,
}

/// How the supervisor's wait for the run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitEnd {
    /// The launcher's end frame arrived and verified.
    Reported(LauncherReport),
    /// An end frame arrived that did not verify.
    BadReport(ReportError),
    /// The launcher said it could not run the program (its words, raw).
    LauncherFailed(Vec<u8>),
    /// The frame stream ended without an end report (the container or its client is gone).
    Vanished {
        /// The docker client's exit code, when it exited within our wait.
        client_exit: Option<i32>,
        /// The engine's record of the container, when it could be read.
        state: Option<ContainerState>,
        /// What the launcher or the client wrote on stderr (raw).
        stderr: Vec<u8>,
        /// Why the frame stream stopped, when not a clean end of file.
        stream: Option<String>,
    },
    /// Our wall-clock backstop passed with no report.
    HostDeadline,
    /// The container did not start the program in time.
    StartupTimeout,
    /// The launcher was up and had the request, but the program's interpreter did not start
    /// within the start-up time nor the program's wall-clock limit: the program's own CPU quota
    /// and memory are too small for Python to start in (never the engine's fault).
    ProgramStartTimeout,
    /// Cancelled by this signal, or by a caller (`None`).
    Cancelled(Option<i32>),
    /// The engine refused or failed before the program could run.
    Engine(EngineError),
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub end: WaitEnd,
    /// The launcher's started frame arrived: the program was forked.
    pub started: bool,
    /// Our own measure: from the started frame to the end of the wait (zero if never started).
    pub host_duration: Duration,
    /// A stream that passed the cap on our side (the launcher stops it first; this is the check).
    pub host_over_cap: Option<Stream>,
    pub limits: Limits,
    /// The runner image, for messages.
    pub image: String,
}

/// What a run's report says, before its output is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    pub cpu_time: Option<Duration>,
    pub output_limit_stream: Option<Stream>,
    pub interrupt_signal: Option<i32>,
    /// The message for statuses whose message is not derived from the limits (sandbox errors,
    /// rejections, interruptions).
    pub error: Option<String>,
}

impl Decision {
    fn new(status: Status) -> Decision {
        Decision {
            status,
            exit_code: None,
            signal: None,
            duration: Duration::ZERO,
            cpu_time: None,
            output_limit_stream: None,
            interrupt_signal: None,
            error: None,
        }
    }

    fn failed(message: String) -> Decision {
        Decision {
            error: Some(message),
            ..Decision::new(Status::SandboxError)
        }
    }
}

/// Whole milliseconds: limits and measures are compared as they are reported.
fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

/// Is `used` over `limit`, compared in the whole milliseconds both are reported in?
pub fn over(used: Duration, limit: Duration) -> bool {
    millis(used) > millis(limit)
}

/// The status of a run from what was observed. See the module docs for the rules.
pub fn decide(observed: &Observation) -> Decision {
    match &observed.end {
        WaitEnd::Reported(report) => from_report(report, observed),
        WaitEnd::BadReport(error) => Decision::failed(format!(
            "the launcher's end report was not believed ({error}); the program's output is kept but its status is unknown: check the runner image with `safe-exec doctor`"
        )),
        WaitEnd::LauncherFailed(said) => Decision::failed(format!(
            "the runner image `{}` could not start the program ({}): rebuild it with `safe-exec image build` (or `scripts/setup.sh`)",
            observed.image,
            sanitize::one_line(said)
        )),
        WaitEnd::HostDeadline if observed.started => Decision {
            duration: observed.host_duration,
            ..Decision::new(Status::Timeout)
        },
        WaitEnd::ProgramStartTimeout => Decision {
            duration: observed.limits.wall_timeout,
            ..Decision::new(Status::Timeout)
        },
        WaitEnd::HostDeadline | WaitEnd::StartupTimeout => Decision::failed(
            "the container did not start the program in time: the engine may be overloaded or broken; check `docker info`"
                .to_owned(),
        ),
        WaitEnd::Cancelled(signal) => Decision {
            interrupt_signal: *signal,
            duration: observed.host_duration,
            error: Some(match (signal, observed.started) {
                (Some(signal), true) => format!(
                    "interrupted by signal {signal}: the run was stopped and its container removed"
                ),
                (None, true) => {
                    "cancelled: the run was stopped and its container removed".to_owned()
                }
                (_, false) => "interrupted before the program started".to_owned(),
            }),
            ..Decision::new(Status::Interrupted)
        },
        WaitEnd::Engine(error @ EngineError::LimitRefused { .. }) => Decision {
            error: Some(error.to_string()),
            ..Decision::new(Status::Rejected)
        },
        WaitEnd::Engine(error) => Decision::failed(error.to_string()),
        WaitEnd::Vanished {
            client_exit,
            state,
            stderr,
            stream,
        } => vanished(observed, *client_exit, *state, stderr, stream.as_deref()),
    }
}

fn from_report(report: &LauncherReport, observed: &Observation) -> Decision {
    let limits = &observed.limits;
    let measured = Decision {
        duration: report.wall,
        cpu_time: Some(report.cpu),
        ..Decision::new(Status::Ok)
    };
    let cpu_over = over(report.cpu, limits.timeout);
    let wall_over = over(report.wall, limits.wall_timeout);
    // A stop is believed only when the time it names has run out: by the launcher's own numbers,
    // and for the wall clock by ours too.
    let unbelievable = match report.ending {
        ProgramEnd::Stopped(Stop::Cpu) => !cpu_over,
        ProgramEnd::Stopped(Stop::Wall) => {
            !wall_over || observed.host_duration + CLOCK_TOLERANCE < limits.wall_timeout
        }
        _ => false,
    };
    if unbelievable {
        return Decision::failed(format!(
            "the launcher stopped the program at a time limit it had not reached ({} ms CPU, {} ms wall-clock; we saw {} ms): check the runner image with `safe-exec doctor`",
            report.cpu.as_millis(),
            report.wall.as_millis(),
            observed.host_duration.as_millis()
        ))
        .with_measures(&measured);
    }
    let output_stream = match report.ending {
        ProgramEnd::Stopped(Stop::Output(stream)) => Some(stream),
        _ => observed.host_over_cap,
    };
    if report.oom_kills > 0 {
        return Decision {
            status: Status::MemoryLimit,
            ..measured
        };
    }
    if let Some(stream) = output_stream {
        return Decision {
            status: Status::OutputLimit,
            output_limit_stream: Some(stream),
            ..measured
        };
    }
    if cpu_over || wall_over {
        return Decision {
            status: Status::Timeout,
            ..measured
        };
    }
    match report.ending {
        ProgramEnd::Exited(0) => Decision {
            exit_code: Some(0),
            ..measured
        },
        ProgramEnd::Exited(code) => Decision {
            status: Status::RuntimeError,
            exit_code: Some(code),
            ..measured
        },
        ProgramEnd::Signalled(signal) => Decision {
            status: Status::RuntimeError,
            signal: Some(signal),
            ..measured
        },
        // Unreachable: a believed stop passed a limit above; kept total for the table.
        ProgramEnd::Stopped(_) => Decision {
            status: Status::Timeout,
            ..measured
        },
    }
}

impl Decision {
    fn with_measures(self, measured: &Decision) -> Decision {
        Decision {
            duration: measured.duration,
            cpu_time: measured.cpu_time,
            ..self
        }
    }
}

fn vanished(
    observed: &Observation,
    client_exit: Option<i32>,
    state: Option<ContainerState>,
    stderr: &[u8],
    stream: Option<&str>,
) -> Decision {
    let said = sanitize::one_line(stderr);
    let launcher_said = said.contains("safe-exec launcher:");
    // Too little memory for Python to start beside its launcher: the kernel may kill either
    // before the program exists. The limit is the cause, as when the program outgrows it.
    if !observed.started && state.is_some_and(|state| state.oom_killed) {
        return Decision {
            duration: observed.host_duration,
            ..Decision::new(Status::MemoryLimit)
        };
    }
    if !observed.started {
        if launcher_said || client_exit.is_some_and(|code| code != 125) {
            return Decision::failed(format!(
                "the runner image `{}` did not start the program{}: rebuild it with `safe-exec image build` (or `scripts/setup.sh`)",
                observed.image,
                if said.is_empty() { String::new() } else { format!(" ({said})") }
            ));
        }
        if state.is_some_and(|state| !state.started) || client_exit == Some(125) {
            return Decision::failed(format!(
                "the container was created but never started{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ));
        }
        return Decision::failed(format!(
            "the docker client ended before the container started the program{}: check `docker info`",
            if said.is_empty() { String::new() } else { format!(" ({said})") }
        ));
    }
    let measured = Decision {
        duration: observed.host_duration,
        ..Decision::new(Status::Ok)
    };
    if state.is_some_and(|state| state.oom_killed) {
        return Decision {
            status: Status::MemoryLimit,
            ..measured
        };
    }
    let how = match (stream, client_exit, state) {
        (Some(stream), _, _) => format!("its output stream broke: {}", sanitize::text(stream)),
        (None, _, Some(state)) if state.running => {
            "the docker client ended while the container was still running".to_owned()
        }
        (None, Some(code), _) => format!("the container ended with code {code}"),
        (None, None, Some(state)) => format!("the container ended with code {}", state.exit_code),
        (None, None, None) => "the container's state is unknown".to_owned(),
    };
    Decision::failed(format!(
        "the launcher ended without reporting how the program ended ({how}): the engine may have killed the container; check `docker info`"
    ))
    .with_measures(&measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_millis(1000),
            wall_timeout: Duration::from_millis(3000),
            ..Limits::default()
        }
    }

    fn report(ending: ProgramEnd, cpu_ms: u64, wall_ms: u64, oom: u64) -> LauncherReport {
        LauncherReport {
            ending,
            cpu: Duration::from_millis(cpu_ms),
            wall: Duration::from_millis(wall_ms),
            oom_kills: oom,
            stdout_bytes: 0,
            stderr_bytes: 0,
        }
    }

    fn observe(end: WaitEnd, started: bool, host_ms: u64) -> Observation {
        Observation {
            end,
            started,
            host_duration: Duration::from_millis(host_ms),
            host_over_cap: None,
            limits: limits(),
            image: "img".into(),
        }
    }

    fn reported(ending: ProgramEnd, cpu_ms: u64, wall_ms: u64, oom: u64) -> Decision {
        let host_ms = wall_ms;
        decide(&observe(
            WaitEnd::Reported(report(ending, cpu_ms, wall_ms, oom)),
            true,
            host_ms,
        ))
    }

    use ProgramEnd::{Exited, Signalled, Stopped};

    /// (ending, cpu ms, wall ms, oom kills) → (status, exit code, signal), limits 1000 ms CPU and
    /// 3000 ms wall-clock.
    type Row = (ProgramEnd, u64, u64, u64, Status, Option<i32>, Option<i32>);

    #[test]
    fn the_end_report_decides_every_status() {
        let table: &[Row] = &[
            (Exited(0), 10, 20, 0, Status::Ok, Some(0), None),
            (Exited(3), 10, 20, 0, Status::RuntimeError, Some(3), None),
            // A program's own 137 is an exit code, never a signal.
            (
                Exited(137),
                10,
                20,
                0,
                Status::RuntimeError,
                Some(137),
                None,
            ),
            (
                Signalled(11),
                10,
                20,
                0,
                Status::RuntimeError,
                None,
                Some(11),
            ),
            (Signalled(9), 10, 20, 0, Status::RuntimeError, None, Some(9)),
            // The kernel's OOM count wins over how the program ended.
            (Signalled(9), 10, 20, 1, Status::MemoryLimit, None, None),
            (Exited(0), 10, 20, 2, Status::MemoryLimit, None, None),
            (
                Stopped(Stop::Cpu),
                1001,
                1500,
                1,
                Status::MemoryLimit,
                None,
                None,
            ),
            // Exact to the millisecond: at the limit is in time, one past it is not.
            (Exited(0), 1000, 1000, 0, Status::Ok, Some(0), None),
            (Exited(0), 1001, 1001, 0, Status::Timeout, None, None),
            (Exited(0), 500, 3000, 0, Status::Ok, Some(0), None),
            (Exited(0), 500, 3001, 0, Status::Timeout, None, None),
            (Exited(1), 1200, 1300, 0, Status::Timeout, None, None),
            (
                Stopped(Stop::Cpu),
                1001,
                2400,
                0,
                Status::Timeout,
                None,
                None,
            ),
            (Stopped(Stop::Wall), 3, 3001, 0, Status::Timeout, None, None),
            (
                Stopped(Stop::Output(Stream::Stderr)),
                5,
                6,
                0,
                Status::OutputLimit,
                None,
                None,
            ),
        ];
        for &(ending, cpu, wall, oom, status, exit_code, signal) in table {
            let decision = reported(ending, cpu, wall, oom);
            let row = format!("{ending:?} cpu {cpu} wall {wall} oom {oom}");
            assert_eq!(decision.status, status, "{row}");
            assert_eq!(decision.exit_code, exit_code, "{row}");
            assert_eq!(decision.signal, signal, "{row}");
            assert_eq!(decision.duration, Duration::from_millis(wall), "{row}");
            assert_eq!(decision.cpu_time, Some(Duration::from_millis(cpu)), "{row}");
        }
    }

    #[test]
    fn the_reported_duration_and_the_status_never_disagree() {
        for cpu in 990..1010 {
            for wall in [cpu, 2990, 2999, 3000, 3001, 3010] {
                let decision = reported(Exited(0), cpu, wall, 0);
                let over = cpu > 1000 || wall > 3000;
                assert_eq!(decision.status == Status::Timeout, over, "{cpu} {wall}");
                assert_eq!(decision.status == Status::Ok, !over, "{cpu} {wall}");
            }
        }
    }

    #[test]
    fn a_stop_whose_time_has_not_run_out_is_not_believed() {
        // The launcher claims the CPU limit after 11 ms.
        let early = reported(Stopped(Stop::Cpu), 11, 11, 0);
        assert_eq!(early.status, Status::SandboxError);
        assert!(early.error.unwrap().contains("had not reached"));
        // The wall clock by its own numbers, but our clock saw the run end far sooner.
        let decision = decide(&observe(
            WaitEnd::Reported(report(Stopped(Stop::Wall), 5, 3001, 0)),
            true,
            40,
        ));
        assert_eq!(decision.status, Status::SandboxError);
        // Our clock trails the launcher's by a little: still believed.
        let decision = decide(&observe(
            WaitEnd::Reported(report(Stopped(Stop::Wall), 5, 3001, 0)),
            true,
            2700,
        ));
        assert_eq!(decision.status, Status::Timeout);
    }

    #[test]
    fn output_past_the_cap_on_our_side_is_an_output_limit_even_if_the_launcher_missed_it() {
        let mut observed = observe(WaitEnd::Reported(report(Exited(0), 5, 6, 0)), true, 6);
        observed.host_over_cap = Some(Stream::Stdout);
        let decision = decide(&observed);
        assert_eq!(decision.status, Status::OutputLimit);
        assert_eq!(decision.output_limit_stream, Some(Stream::Stdout));
    }

    #[test]
    fn without_a_report_our_deadline_is_a_timeout_only_once_the_program_started() {
        let timed_out = decide(&observe(WaitEnd::HostDeadline, true, 4000));
        assert_eq!(timed_out.status, Status::Timeout);
        assert_eq!(timed_out.duration, Duration::from_millis(4000));
        assert_eq!(timed_out.cpu_time, None);
        assert_eq!(
            decide(&observe(WaitEnd::HostDeadline, false, 0)).status,
            Status::SandboxError
        );
        assert_eq!(
            decide(&observe(WaitEnd::StartupTimeout, false, 0)).status,
            Status::SandboxError
        );
        // Python could not start within the program's own limits: the program's timeout.
        let starved = decide(&observe(WaitEnd::ProgramStartTimeout, false, 0));
        assert_eq!(starved.status, Status::Timeout);
        assert_eq!(starved.duration, limits().wall_timeout);
        assert_eq!(starved.cpu_time, None);
        assert_eq!(starved.error, None);
    }

    #[test]
    fn a_vanished_launcher_is_the_engine_s_oom_word_or_a_sandbox_error_never_the_program_s() {
        let gone = |started, client_exit, state, stderr: &[u8]| {
            decide(&observe(
                WaitEnd::Vanished {
                    client_exit,
                    state,
                    stderr: stderr.to_vec(),
                    stream: None,
                },
                started,
                50,
            ))
        };
        let oom = ContainerState {
            exit_code: 137,
            oom_killed: true,
            started: true,
            running: false,
        };
        assert_eq!(
            gone(true, Some(137), Some(oom), b"").status,
            Status::MemoryLimit
        );
        let killed = ContainerState {
            oom_killed: false,
            ..oom
        };
        let decision = gone(true, Some(137), Some(killed), b"");
        assert_eq!(decision.status, Status::SandboxError);
        assert!(decision.error.unwrap().contains("code 137"));
        // An image from an older launcher: it never starts the program and says why.
        let old = gone(
            false,
            Some(125),
            None,
            b"safe-exec launcher: usage: launch.py --code-wait SECS\n",
        );
        assert_eq!(old.status, Status::SandboxError);
        let message = old.error.unwrap();
        assert!(message.contains("rebuild it"), "{message}");
        assert!(message.contains("usage: launch.py"), "{message}");
        let never = ContainerState {
            started: false,
            ..killed
        };
        assert!(gone(false, Some(125), Some(never), b"")
            .error
            .unwrap()
            .contains("never started"));
        // Out of memory before the program was handed over: the limit, not the image.
        assert_eq!(
            gone(false, Some(137), Some(oom), b"").status,
            Status::MemoryLimit
        );
    }

    #[test]
    fn outside_text_in_messages_is_sanitised() {
        let decision = decide(&observe(
            WaitEnd::LauncherFailed(b"bad\r::warning::x\x1b[31m".to_vec()),
            false,
            0,
        ));
        let message = decision.error.unwrap();
        assert!(
            !message.contains('\r') && !message.contains('\x1b'),
            "{message}"
        );
    }

    #[test]
    fn a_forged_or_garbled_report_is_a_sandbox_error() {
        let decision = decide(&observe(
            WaitEnd::BadReport(ReportError::BadSignature),
            true,
            5,
        ));
        assert_eq!(decision.status, Status::SandboxError);
    }

    #[test]
    fn cancellation_and_engine_refusals() {
        let by_signal = decide(&observe(WaitEnd::Cancelled(Some(15)), true, 300));
        assert_eq!(by_signal.status, Status::Interrupted);
        assert_eq!(by_signal.interrupt_signal, Some(15));
        assert!(by_signal.error.unwrap().contains("signal 15"));
        let early = decide(&observe(WaitEnd::Cancelled(None), false, 0));
        assert!(early.error.unwrap().contains("before the program started"));
        let refused = decide(&observe(
            WaitEnd::Engine(EngineError::LimitRefused {
                detail: "only 2 CPUs".into(),
            }),
            false,
            0,
        ));
        assert_eq!(refused.status, Status::Rejected);
        let missing = decide(&observe(
            WaitEnd::Engine(EngineError::ImageMissing {
                image: "img".into(),
            }),
            false,
            0,
        ));
        assert_eq!(missing.status, Status::SandboxError);
    }
}
