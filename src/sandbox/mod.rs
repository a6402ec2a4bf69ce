//! What a sandbox is made of: the image, the container's name and labels, and the exact `docker`
//! arguments that lock it down. Pure data and pure functions; `runner` executes them.

pub mod docker;

pub use docker::{ContainerSpec, CreateArgs};

/// The runner image `scripts/setup.sh` builds from `runner_image/`.
pub const DEFAULT_IMAGE: &str = "safe-exec-python:3.11";

/// Every container safe-exec creates carries this label (value `1`); `safe-exec gc` and the tests
/// find ours by it and never touch anything else.
pub const MANAGED_LABEL: &str = "safe-exec.managed";
/// Unix time after which a container of ours is certainly orphaned (its run's deadline plus a
/// margin); `gc` removes such containers.
pub const EXPIRES_LABEL: &str = "safe-exec.expires";
/// Optional grouping label, set from `SAFE_EXEC_LABEL`, so a test or CI job can check that exactly
/// its own containers are gone.
pub const SESSION_LABEL: &str = "safe-exec.session";

/// The unprivileged user (and group) the program runs as; created in `runner_image/Dockerfile`.
pub const SANDBOX_UID: u32 = 10001;
/// Where the program's source is written and its working directory: the only writable place.
pub const WORKDIR: &str = "/tmp";
/// Version 2 of the stdin protocol understood by `runner_image/launch.py` (version 1 had no key
/// and no trailer).
pub const PROTOCOL: &str = "SAFE-EXEC/2";
/// The launcher inside the image.
pub const LAUNCHER: &str = "/opt/safe-exec/launch.py";
/// The launcher writes this to stderr just before it becomes the program. It is the first thing on
/// stderr (the program does not exist yet), so the supervisor strips it and starts the program's
/// clock when it arrives: container start-up does not count against the time limit.
pub const STARTED_MARKER: &[u8] = b"\0safe-exec:started\n";
/// The launcher's last line on stderr starts with this:
/// `\0safe-exec:end exit <code> oom <count> watchdog <0|1> <mac>` (or `signal <number> ...`). It
/// says how the program ended, which the container's exit code cannot (`sys.exit(137)` and SIGKILL
/// both give 137), how many OOM kills the kernel counted in the container's memory cgroup, and
/// whether the launcher's own watchdog did the killing. `mac` is HMAC-SHA256 of the words before
/// it under the run's key, which the program never sees: a line without a valid MAC is output.
pub const TRAILER_PREFIX: &[u8] = b"\0safe-exec:end ";
/// How long the launcher waits for its code before giving up (bounds a container whose
/// supervisor died before sending it).
pub const CODE_WAIT_SECS: u64 = 30;

/// The first bytes written to the container's stdin: the header `launch.py` reads before the
/// source. The program's own stdin follows the source. `key` (32 lowercase hex digits) signs the
/// launcher's trailer.
pub fn protocol_header(filename: &str, source_len: usize, key: &str) -> String {
    format!("{PROTOCOL} {source_len} {filename} {key}\n")
}
