//! The docker argv builder: (limits, container identity) → the arguments of `docker run`.
//!
//! Every hardening flag lives here and nowhere else, and each is unit-tested; see
//! `docs/threats.md` and the security model for what each one blocks. This module never runs
//! anything.

use std::time::Duration;

use crate::limits::Limits;

use super::{EXPIRES_LABEL, LAUNCHER, MANAGED_LABEL, SESSION_LABEL, WORKDIR};

/// Size of the only writable filesystem, `/tmp`. Its pages count against the memory limit.
pub const TMPFS_BYTES: u64 = 16 * 1024 * 1024;
/// Largest file the program may write (RLIMIT_FSIZE); below the tmpfs size so a single file hits
/// "File too large" before the disk is full.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Open file descriptors per process (RLIMIT_NOFILE).
pub const MAX_OPEN_FILES: u32 = 256;
/// How long after its deadline an orphaned container is considered stale by `gc`.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How long a cold run's launcher waits for its request before it gives up (bounds a container
/// whose supervisor died before sending it).
pub const COLD_CODE_WAIT: Duration = Duration::from_secs(30);

/// Under gVisor (`runsc`), the runtime's own host threads count against `--pids-limit`: about 40
/// for the sandbox itself and about 5 for each of the program's processes (measured with Debian's
/// runsc, 2022-12). The program's own process limit is enforced inside the sandbox (RLIMIT_NPROC on
/// its uid, which gVisor honours); the engine's limit is this much plus
/// [`RUNSC_PIDS_PER_TASK`] per allowed process, a bound on the host that the program cannot reach
/// before its own limit stops it.
pub const RUNSC_PIDS_BASE: u32 = 64;
/// Host threads allowed per process the program may have under gVisor (measured: about 5).
pub const RUNSC_PIDS_PER_TASK: u32 = 8;
/// Under gVisor the engine's memory limit also holds the runtime itself (its kernel, its file
/// cache of the image): this much is added to it, and the program's own limit is watched inside
/// the sandbox by the launcher (`--memory`), against the sandbox kernel's own account.
pub const RUNSC_MEMORY_ROOM: u64 = 128 * 1024 * 1024;

/// Which command-line client, and so which dialect, the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EngineKind {
    /// The Docker engine through the `docker` CLI.
    #[default]
    Docker,
    /// Podman through the `podman` CLI (daemonless; its runtime is chosen on the command line).
    Podman,
}

/// Is `runtime` gVisor? `runsc` as Docker registers it, or a name saying so (`runsc-debug`,
/// `gvisor`).
pub fn is_gvisor(runtime: Option<&str>) -> bool {
    runtime.is_some_and(|name| name.starts_with("runsc") || name.contains("gvisor"))
}

/// What the engine enforces on the host, and what the launcher enforces inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSplit {
    /// `--pids-limit`.
    pub host_pids: u32,
    /// `--memory` and `--memory-swap`.
    pub host_memory: u64,
    /// The launcher's `--pids`: RLIMIT_NPROC of the program's uid.
    pub program_pids: u32,
    /// The launcher's `--memory`, when the launcher watches memory itself (gVisor).
    pub program_memory: Option<u64>,
}

impl LimitSplit {
    /// Under runc the engine's cgroup holds the program and the launcher: the limits apply as
    /// given, and the launcher (one process) leaves the rest to the program. Under gVisor see
    /// [`RUNSC_PIDS_BASE`] and [`RUNSC_MEMORY_ROOM`].
    pub fn of(limits: &Limits, runtime: Option<&str>) -> LimitSplit {
        // The launcher is one of the container's processes: the program gets the rest.
        let program_pids = limits.pids.saturating_sub(1).max(1);
        if is_gvisor(runtime) {
            LimitSplit {
                host_pids: RUNSC_PIDS_BASE
                    .saturating_add(RUNSC_PIDS_PER_TASK.saturating_mul(limits.pids)),
                host_memory: limits.memory_bytes.saturating_add(RUNSC_MEMORY_ROOM),
                program_pids,
                program_memory: Some(limits.memory_bytes),
            }
        } else {
            LimitSplit {
                host_pids: limits.pids,
                host_memory: limits.memory_bytes,
                program_pids,
                program_memory: None,
            }
        }
    }
}

/// The only environment the program sees (the launcher drops everything else, including the
/// image's own `ENV` lines).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", WORKDIR),
    ("TMPDIR", WORKDIR),
    ("LANG", "C.UTF-8"),
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    // matplotlib (in the data-science image): headless, `plt.show()` saves figures into out/,
    // and the font cache built into the image is used rather than rebuilt in every container.
    ("MPLBACKEND", "module://safe_exec_plots"),
    ("MPLCONFIGDIR", "/tmp/.matplotlib"),
];

/// Who a container is: its unique name, the labels that let us find it again, and the uid its
/// program gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Unix seconds after which the container is stale (see [`EXPIRES_LABEL`]).
    pub expires_at: u64,
    /// Value of [`SESSION_LABEL`], when set.
    pub session: Option<String>,
    /// The program's uid and gid, from [`super::PROGRAM_UIDS`].
    pub program_uid: u32,
    /// How long the launcher waits for its request.
    pub code_wait: Duration,
    /// The engine's dialect.
    pub kind: EngineKind,
    /// The OCI runtime (`--runtime`), when not the engine's default. With Podman it is a global
    /// option of the client instead, and only decides the [`LimitSplit`] here.
    pub runtime: Option<String>,
}

/// The arguments of `docker run` for one container, without the leading `docker`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunArgs(pub Vec<String>);

impl RunArgs {
    pub fn build(spec: &ContainerSpec, limits: &Limits) -> RunArgs {
        let mut args: Vec<String> = Vec::with_capacity(80);
        let mut push = |items: &[&str]| args.extend(items.iter().map(|item| (*item).to_owned()));

        // Attached stdin carries the request, then the program's own input; no TTY. Signals to
        // the client are never passed on: we decide what happens to the container.
        push(&["run", "--interactive", "--sig-proxy=false"]);
        push(&["--name", &spec.name]);
        push(&["--label", &format!("{MANAGED_LABEL}=1")]);
        push(&["--label", &format!("{EXPIRES_LABEL}={}", spec.expires_at)]);
        if let Some(session) = &spec.session {
            push(&["--label", &format!("{SESSION_LABEL}={session}")]);
        }
        if let (EngineKind::Docker, Some(runtime)) = (spec.kind, &spec.runtime) {
            push(&["--runtime", runtime]);
        }
        let split = LimitSplit::of(limits, spec.runtime.as_deref());

        // Isolation.
        push(&["--network", "none"]);
        push(&["--ipc", "none"]);
        push(&["--read-only"]);
        let tmpfs = format!("{WORKDIR}:rw,nosuid,nodev,noexec,size={TMPFS_BYTES},mode=1777");
        push(&["--tmpfs", &tmpfs]);
        push(&["--hostname", "sandbox"]);
        push(&["--workdir", WORKDIR]);

        // Privileges. The launcher starts as root holding only the two capabilities it needs to
        // give the program a uid of its own; it forks the program, which drops to that uid with
        // no capabilities, and then drops to its own uid: after the fork nothing in the container
        // is root or holds a capability, and no-new-privileges keeps it so.
        push(&["--user", "0:0"]);
        push(&[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SETUID",
            "--cap-add",
            "SETGID",
        ]);
        push(&["--security-opt", "no-new-privileges"]);

        // Resources.
        let memory = split.host_memory.to_string();
        push(&["--memory", &memory, "--memory-swap", &memory]);
        push(&["--cpus", &format_cpus(limits.cpus)]);
        push(&["--pids-limit", &split.host_pids.to_string()]);
        push(&[
            "--ulimit",
            &format!("nofile={MAX_OPEN_FILES}:{MAX_OPEN_FILES}"),
        ]);
        if spec.kind == EngineKind::Podman {
            // Podman raises nproc to the host's maximum unless told; the launcher lowers it for
            // the program, and this bounds the launcher's own start.
            let nproc = limits.pids.to_string();
            push(&["--ulimit", &format!("nproc={nproc}:{nproc}")]);
        }
        push(&[
            "--ulimit",
            &format!("fsize={MAX_FILE_BYTES}:{MAX_FILE_BYTES}"),
        ]);
        push(&["--ulimit", "core=0:0"]);

        // Housekeeping: never log, never pull. The launcher is PID 1 (it reaps orphans, and its
        // exit ends everything in the container), so there is no --init.
        push(&["--log-driver", "none", "--pull", "never"]);
        for (name, value) in ENVIRONMENT {
            push(&["--env", &format!("{name}={value}")]);
        }

        push(&[&spec.image]);
        push(&["python3", "-I", "-S", LAUNCHER]);
        push(&[
            "--uid",
            &spec.program_uid.to_string(),
            "--cpu-ms",
            &millis(limits.timeout).to_string(),
            "--wall-ms",
            &millis(limits.wall_timeout).to_string(),
            "--cpus",
            &format_cpus(limits.cpus),
            "--max-output",
            &limits.max_output_bytes.to_string(),
            "--pids",
            &split.program_pids.to_string(),
            "--code-wait",
            &spec.code_wait.as_secs().max(1).to_string(),
        ]);
        if let Some(memory) = split.program_memory {
            push(&["--memory", &memory.to_string()]);
        }
        RunArgs(args)
    }
}

/// Whole milliseconds, at least 1.
fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "safe-exec-test-1".into(),
            image: "img:1".into(),
            expires_at: 1_000,
            session: Some("abc".into()),
            program_uid: 1_234_567,
            code_wait: COLD_CODE_WAIT,
            kind: EngineKind::Docker,
            runtime: None,
        }
    }

    fn build(limits: &Limits) -> Vec<String> {
        RunArgs::build(&spec(), limits).0
    }

    fn build_on(kind: EngineKind, runtime: Option<&str>, limits: &Limits) -> Vec<String> {
        let spec = ContainerSpec {
            kind,
            runtime: runtime.map(str::to_owned),
            ..spec()
        };
        RunArgs::build(&spec, limits).0
    }

    /// The value after `flag` in the launcher's arguments.
    fn launcher_arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let command = &args[image_position(args) + 1..];
        command
            .windows(2)
            .find(|pair| pair[0] == flag)
            .map(|pair| pair[1].as_str())
    }

    #[test]
    fn under_runc_the_engine_enforces_the_limits_as_given() {
        let limits = Limits::default();
        for runtime in [None, Some("runc")] {
            let args = build_on(EngineKind::Docker, runtime, &limits);
            assert!(has_pair(&args, "--pids-limit", "64"));
            assert!(has_pair(&args, "--memory", "134217728"));
            assert_eq!(launcher_arg(&args, "--pids"), Some("63"));
            assert_eq!(launcher_arg(&args, "--memory"), None);
        }
        let runc = build_on(EngineKind::Docker, Some("runc"), &limits);
        assert!(has_pair(&runc, "--runtime", "runc"));
        assert!(!build(&limits).contains(&"--runtime".to_owned()));
    }

    #[test]
    fn under_gvisor_the_program_s_limits_move_inside_and_the_host_leaves_room_for_the_runtime() {
        let limits = Limits {
            pids: 64,
            memory_bytes: 128 * 1024 * 1024,
            ..Limits::default()
        };
        let args = build_on(EngineKind::Docker, Some("runsc"), &limits);
        let options = &args[..image_position(&args)];
        assert!(has_pair(options, "--runtime", "runsc"));
        // 64 + 8 x 64: the runtime's ~40 threads and ~5 per process of the program's 63.
        assert!(has_pair(options, "--pids-limit", "576"));
        assert!(has_pair(options, "--memory", &(256u64 << 20).to_string()));
        assert!(has_pair(
            options,
            "--memory-swap",
            &(256u64 << 20).to_string()
        ));
        assert_eq!(launcher_arg(&args, "--pids"), Some("63"));
        assert_eq!(launcher_arg(&args, "--memory"), Some("134217728"));
        // Whatever the limits, the host bound is above what the program can reach.
        for pids in [1, 2, 16, 64, 1024] {
            let split = LimitSplit::of(&Limits { pids, ..limits }, Some("runsc"));
            assert!(split.host_pids > 40 + 5 * split.program_pids);
            assert!(split.host_memory > split.program_memory.unwrap());
        }
        assert!(is_gvisor(Some("runsc-debug")) && is_gvisor(Some("gvisor")));
        assert!(!is_gvisor(Some("runc")) && !is_gvisor(None));
    }

    #[test]
    fn podman_gets_explicit_process_limits_and_no_runtime_option() {
        let args = build_on(EngineKind::Podman, Some("runc"), &Limits::default());
        let options = &args[..image_position(&args)];
        assert!(has_pair(options, "--ulimit", "nproc=64:64"));
        assert!(has_pair(options, "--ulimit", "nofile=256:256"));
        assert!(!options.contains(&"--runtime".to_owned()));
        assert!(!options.contains(&"--init".to_owned()));
        assert!(!build(&Limits::default())
            .iter()
            .any(|arg| arg.starts_with("nproc=")));
    }

    /// `flag value` appears as two consecutive arguments.
    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2)
            .any(|pair| pair[0] == flag && pair[1] == value)
    }

    fn image_position(args: &[String]) -> usize {
        args.iter()
            .position(|arg| arg == "img:1")
            .expect("image present")
    }

    #[test]
    fn every_hardening_flag_is_present_before_the_image() {
        let args = build(&Limits::default());
        let options = &args[..image_position(&args)];
        assert_eq!(options[0], "run");
        assert!(options.contains(&"--interactive".to_owned()));
        assert!(options.contains(&"--sig-proxy=false".to_owned()));
        assert!(has_pair(options, "--network", "none"));
        assert!(has_pair(options, "--ipc", "none"));
        assert!(options.contains(&"--read-only".to_owned()));
        assert!(has_pair(
            options,
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,noexec,size=16777216,mode=1777"
        ));
        assert!(has_pair(options, "--security-opt", "no-new-privileges"));
        assert!(has_pair(options, "--ulimit", "nofile=256:256"));
        assert!(has_pair(options, "--ulimit", "fsize=8388608:8388608"));
        assert!(has_pair(options, "--ulimit", "core=0:0"));
        assert!(has_pair(options, "--log-driver", "none"));
        assert!(has_pair(options, "--pull", "never"));
    }

    #[test]
    fn only_the_launcher_s_two_capabilities_and_no_other_privilege() {
        let args = build(&Limits::default());
        let options = &args[..image_position(&args)];
        assert!(has_pair(options, "--user", "0:0"));
        assert!(has_pair(options, "--cap-drop", "ALL"));
        let added: Vec<&String> = options
            .windows(2)
            .filter(|pair| pair[0] == "--cap-add")
            .map(|pair| &pair[1])
            .collect();
        assert_eq!(added, ["SETUID", "SETGID"]);
        // The launcher is PID 1: Docker's init would stand between it and the program's orphans.
        assert!(!options.contains(&"--init".to_owned()));
    }

    #[test]
    fn memory_and_swap_are_equal_and_limits_are_applied() {
        let limits = Limits {
            memory_bytes: 64 * 1024 * 1024,
            cpus: 0.5,
            pids: 32,
            ..Limits::default()
        };
        let args = build(&limits);
        assert!(has_pair(&args, "--memory", "67108864"));
        assert!(has_pair(&args, "--memory-swap", "67108864"));
        assert!(has_pair(&args, "--cpus", "0.5"));
        assert!(has_pair(&args, "--pids-limit", "32"));
        let defaults = build(&Limits::default());
        assert!(has_pair(&defaults, "--memory", "134217728"));
        assert!(has_pair(&defaults, "--cpus", "1"));
        assert!(has_pair(&defaults, "--pids-limit", "64"));
    }

    #[test]
    fn container_is_named_and_labelled() {
        let args = build(&Limits::default());
        assert!(has_pair(&args, "--name", "safe-exec-test-1"));
        assert!(has_pair(&args, "--label", "safe-exec.managed=1"));
        assert!(has_pair(&args, "--label", "safe-exec.expires=1000"));
        assert!(has_pair(&args, "--label", "safe-exec.session=abc"));
    }

    #[test]
    fn nothing_dangerous_is_ever_passed() {
        let args = build(&Limits::default());
        for flag in [
            "--privileged",
            "--volume",
            "-v",
            "--mount",
            "--pid",
            "--userns",
            "--uts",
            "--device",
            "--rm",
            "-e",
        ] {
            let present = args
                .iter()
                .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")));
            assert!(!present, "{flag} must not appear in {args:?}");
        }
        let joined = args.join(" ");
        for text in ["docker.sock", "unconfined", "network host", "ipc host"] {
            assert!(!joined.contains(text), "{text} must not appear in {joined}");
        }
    }

    #[test]
    fn environment_is_only_ours_and_every_variable_has_a_value() {
        let args = build(&Limits::default());
        let envs: Vec<&String> = args
            .windows(2)
            .filter(|pair| pair[0] == "--env")
            .map(|pair| &pair[1])
            .collect();
        assert_eq!(envs.len(), ENVIRONMENT.len());
        assert!(
            envs.iter().all(|env| env.contains('=')),
            "`-e NAME` would leak the host's value"
        );
        assert!(envs.contains(&&"PYTHONUNBUFFERED=1".to_owned()));
    }

    #[test]
    fn command_is_the_launcher_with_the_run_s_uid_and_limits() {
        let limits = Limits {
            timeout: Duration::from_millis(2500),
            wall_timeout: Duration::from_secs(6),
            max_output_bytes: 4096,
            ..Limits::default()
        };
        let args = build(&limits);
        let command = &args[image_position(&args) + 1..];
        assert_eq!(
            command,
            [
                "python3",
                "-I",
                "-S",
                "/opt/safe-exec/launch.pyc",
                "--uid",
                "1234567",
                "--cpu-ms",
                "2500",
                "--wall-ms",
                "6000",
                "--cpus",
                "1",
                "--max-output",
                "4096",
                "--pids",
                "63",
                "--code-wait",
                "30"
            ]
        );
    }
}
