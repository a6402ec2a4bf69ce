//! The docker argv builder: (limits, container identity) → the arguments of `docker create`.
//!
//! Every hardening flag lives here and nowhere else, and each is unit-tested; see
//! `../shared/THREATS.md` (and the README's security section) for what each one blocks. This
//! module never runs anything.

use std::time::Duration;

use crate::limits::Limits;

use super::{
    CODE_WAIT_SECS, EXPIRES_LABEL, LAUNCHER, MANAGED_LABEL, SANDBOX_UID, SESSION_LABEL, WORKDIR,
};

/// Size of the only writable filesystem, `/tmp`. Its pages count against the memory limit.
pub const TMPFS_BYTES: u64 = 16 * 1024 * 1024;
/// Largest file the program may write (RLIMIT_FSIZE); below the tmpfs size so a single file hits
/// "File too large" before the disk is full.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Open file descriptors per process (RLIMIT_NOFILE).
pub const MAX_OPEN_FILES: u32 = 256;
/// The in-container watchdog fires this long after the time limit. Its clock starts just before
/// the program's (the launcher writes the start marker, then execs it), so the grace covers the
/// marker's trip to the supervisor; it only decides anything when the supervisor itself is gone.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(1);
/// CPU seconds the kernel allows each process of the program (RLIMIT_CPU, set by the launcher) on
/// top of what the time limit at the CPU quota allows: a backstop that needs nobody awake, for a
/// program that stops its watchdog with SIGSTOP while its supervisor is gone.
pub const CPU_SECONDS_GRACE: u64 = 2;
/// How long after its deadline an orphaned container is considered stale by `gc`.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The only environment the program sees (the launcher drops everything else, including the
/// image's own `ENV` lines).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", WORKDIR),
    ("TMPDIR", WORKDIR),
    ("LANG", "C.UTF-8"),
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

/// Who a container is: its unique name and the labels that let us find it again.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Unix seconds after which the container is stale (see [`EXPIRES_LABEL`]).
    pub expires_at: u64,
    /// Value of [`SESSION_LABEL`], when set.
    pub session: Option<String>,
}

/// The arguments of `docker create` for one run, without the leading `docker`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateArgs(pub Vec<String>);

impl CreateArgs {
    pub fn build(spec: &ContainerSpec, limits: &Limits) -> CreateArgs {
        let mut args: Vec<String> = Vec::with_capacity(64);
        let mut push = |items: &[&str]| args.extend(items.iter().map(|item| (*item).to_owned()));

        // Attached stdin carries the program, then the program's own input; no TTY.
        push(&["create", "--interactive"]);
        push(&["--name", &spec.name]);
        push(&["--label", &format!("{MANAGED_LABEL}=1")]);
        push(&["--label", &format!("{EXPIRES_LABEL}={}", spec.expires_at)]);
        if let Some(session) = &spec.session {
            push(&["--label", &format!("{SESSION_LABEL}={session}")]);
        }

        // Isolation.
        push(&["--network", "none"]);
        push(&["--ipc", "none"]);
        push(&["--read-only"]);
        let tmpfs = format!("{WORKDIR}:rw,nosuid,nodev,noexec,size={TMPFS_BYTES},mode=1777");
        push(&["--tmpfs", &tmpfs]);
        push(&["--hostname", "sandbox"]);
        push(&["--workdir", WORKDIR]);

        // Privileges.
        let user = format!("{SANDBOX_UID}:{SANDBOX_UID}");
        push(&["--user", &user]);
        push(&["--cap-drop", "ALL"]);
        push(&["--security-opt", "no-new-privileges"]);

        // Resources.
        let memory = limits.memory_bytes.to_string();
        push(&["--memory", &memory, "--memory-swap", &memory]);
        push(&["--cpus", &format_cpus(limits.cpus)]);
        push(&["--pids-limit", &limits.pids.to_string()]);
        push(&[
            "--ulimit",
            &format!("nofile={MAX_OPEN_FILES}:{MAX_OPEN_FILES}"),
        ]);
        push(&[
            "--ulimit",
            &format!("fsize={MAX_FILE_BYTES}:{MAX_FILE_BYTES}"),
        ]);
        push(&["--ulimit", "core=0:0"]);

        // Housekeeping: reap zombies and forward signals; never log, never pull.
        push(&["--init", "--log-driver", "none", "--pull", "never"]);
        for (name, value) in ENVIRONMENT {
            push(&["--env", &format!("{name}={value}")]);
        }

        push(&[&spec.image]);
        // The launcher receives the code, runs the program and reports how it ended. Its watchdog
        // and the CPU rlimit end the program by themselves even if we are killed with SIGKILL.
        let watchdog = limits.timeout + WATCHDOG_GRACE;
        push(&["python3", "-I", "-S", LAUNCHER]);
        push(&[
            "--code-wait",
            &CODE_WAIT_SECS.to_string(),
            "--watchdog",
            &format!("{}", watchdog.as_secs_f64()),
            "--cpu-seconds",
            &cpu_seconds(watchdog, limits.cpus).to_string(),
        ]);
        CreateArgs(args)
    }
}

/// Whole CPU seconds one process may use: the most the quota allows over `watchdog` (a process's
/// threads share the quota), rounded up, plus [`CPU_SECONDS_GRACE`].
fn cpu_seconds(watchdog: Duration, cpus: f64) -> u64 {
    (watchdog.as_secs_f64() * cpus.max(1.0)).ceil() as u64 + CPU_SECONDS_GRACE
}

fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(limits: &Limits) -> Vec<String> {
        let spec = ContainerSpec {
            name: "safe-exec-test-1".into(),
            image: "img:1".into(),
            expires_at: 1_000,
            session: Some("abc".into()),
        };
        CreateArgs::build(&spec, limits).0
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
        assert_eq!(options[0], "create");
        assert!(options.contains(&"--interactive".to_owned()));
        assert!(has_pair(options, "--network", "none"));
        assert!(has_pair(options, "--ipc", "none"));
        assert!(options.contains(&"--read-only".to_owned()));
        assert!(has_pair(
            options,
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,noexec,size=16777216,mode=1777"
        ));
        assert!(has_pair(options, "--user", "10001:10001"));
        assert!(has_pair(options, "--cap-drop", "ALL"));
        assert!(has_pair(options, "--security-opt", "no-new-privileges"));
        assert!(has_pair(options, "--ulimit", "nofile=256:256"));
        assert!(has_pair(options, "--ulimit", "fsize=8388608:8388608"));
        assert!(has_pair(options, "--ulimit", "core=0:0"));
        assert!(options.contains(&"--init".to_owned()));
        assert!(has_pair(options, "--log-driver", "none"));
        assert!(has_pair(options, "--pull", "never"));
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
            "--cap-add",
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
    fn command_is_the_launcher_with_its_watchdog() {
        let limits = Limits {
            timeout: Duration::from_millis(2500),
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
                "/opt/safe-exec/launch.py",
                "--code-wait",
                "30",
                "--watchdog",
                "3.5",
                "--cpu-seconds",
                "6"
            ]
        );
    }

    #[test]
    fn the_cpu_backstop_covers_what_the_quota_allows_before_the_watchdog() {
        let watchdog = Duration::from_millis(11_000);
        assert_eq!(cpu_seconds(watchdog, 1.0), 13);
        assert_eq!(cpu_seconds(watchdog, 0.5), 13);
        assert_eq!(cpu_seconds(watchdog, 2.0), 24);
        assert_eq!(cpu_seconds(Duration::from_millis(1_200), 1.0), 4);
    }
}
