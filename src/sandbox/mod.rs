//! What a sandbox is made of: the image, the container's name and labels, the launcher's protocol,
//! and the exact `docker` arguments that lock a container down. Pure data and pure functions;
//! `runner` executes them.
//!
//! The protocol constants here are the host's half of `runner_image/launch.py`; a unit test reads
//! that file and checks that both halves name the same version, tags and uids.

pub mod docker;

pub use docker::{ContainerSpec, RunArgs};

/// The runner image `scripts/setup.sh` builds from `runner_image/`.
pub const DEFAULT_IMAGE: &str = "safe-exec-python:3.11";
/// The data-science runner image (numpy, pandas, matplotlib, scipy) built from
/// `runner_image/ds/` on top of the runner image, when asked for.
pub const DS_IMAGE: &str = "safe-exec-python-ds:3.11";

/// The image an `--image` value names: the short names `python` and `ds` stand for the two
/// runner images; anything else is an image name as docker takes it.
pub fn resolve_image(name: &str) -> &str {
    match name {
        "python" => DEFAULT_IMAGE,
        "ds" => DS_IMAGE,
        other => other,
    }
}

/// Every container safe-exec creates carries this label (value `1`); `safe-exec gc` and the tests
/// find ours by it and never touch anything else.
pub const MANAGED_LABEL: &str = "safe-exec.managed";
/// Unix time after which a container of ours is certainly orphaned (its run's deadline plus a
/// margin); `gc` removes such containers.
pub const EXPIRES_LABEL: &str = "safe-exec.expires";
/// Optional grouping label, set from `SAFE_EXEC_LABEL`, so a test or CI job can check that exactly
/// its own containers are gone.
pub const SESSION_LABEL: &str = "safe-exec.session";

/// The launcher's own uid once it has forked the program (the image's `safe-exec` account). No
/// program ever gets it.
pub const LAUNCHER_UID: u32 = 10001;
/// Programs get a uid (and gid) of their own from this range, picked at random per run, so no two
/// runs share a per-user kernel resource (inotify instances, pending signals, message queues,
/// RLIMIT_NPROC). Far above any account a host or image defines.
pub const PROGRAM_UIDS: std::ops::Range<u32> = 1_000_000..2_000_000_000;
/// Where the program's source is written and its working directory: the only writable place.
pub const WORKDIR: &str = "/tmp";
/// Version 3 of the stdin protocol understood by `runner_image/launch.py` (version 2 had the
/// program share a uid with its launcher; version 1 had no key and no trailer).
pub const PROTOCOL: &str = "SAFE-EXEC/3";
/// Where the image keeps the launcher's source, `runner_image/launch.py`.
pub const LAUNCHER_SOURCE: &str = "/opt/safe-exec/launch.py";
/// The launcher the container runs: [`LAUNCHER_SOURCE`] compiled when the image is built (Python
/// compiles a script it is given on every start, and never caches it).
pub const LAUNCHER: &str = "/opt/safe-exec/launch.pyc";

/// The launcher's frames on the container's stdout: `<tag> <u32 big-endian length> <payload>`.
pub mod tags {
    /// The launcher is up and waits for its request (payload: the protocol name).
    pub const READY: u8 = b'R';
    /// The program exists from now on.
    pub const STARTED: u8 = b'S';
    /// Bytes the program wrote to its stdout.
    pub const STDOUT: u8 = b'1';
    /// Bytes the program wrote to its stderr.
    pub const STDERR: u8 = b'2';
    /// An artifact: its path under `out/`, a NUL byte, then (a piece of) its bytes.
    pub const ARTIFACT: u8 = b'A';
    /// The artifacts' manifest (JSON), after the last artifact frame.
    pub const MANIFEST: u8 = b'M';
    /// The signed end report, always the last frame.
    pub const END: u8 = b'E';
    /// The launcher could not run the program (payload: why); nothing was started.
    pub const FAILED: u8 = b'X';
}

/// The request header `launch.py` reads before the files: protocol, the run's key (32 lowercase
/// hex digits, signs the end frame), the number of files that follow, and how many bytes of
/// artifacts to send back (0: none).
pub fn request_header(key: &str, files: usize, artifact_bytes: u64) -> String {
    format!("{PROTOCOL} {key} {files} {artifact_bytes}\n")
}

/// The directory beside the program whose files come back as artifacts.
pub const ARTIFACT_DIR: &str = "out";
/// Most artifact files the launcher sends (MAX_ARTIFACTS in launch.py).
pub const MAX_ARTIFACTS: usize = 64;
/// Most artifact bytes a run may ask for (MAX_ARTIFACT_BYTES in launch.py).
pub const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;
/// Most input files beside the program (MAX_FILES in launch.py counts the program too).
pub const MAX_INPUT_FILES: usize = 63;

/// The line before each file's bytes in the request.
pub fn file_header(name: &str, size: usize) -> String {
    format!("{size} {name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAUNCH_PY: &str = include_str!("../../runner_image/launch.py");

    /// The value of `NAME = ...` in launch.py.
    fn python_constant(name: &str) -> &'static str {
        LAUNCH_PY
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("launch.py defines no {name}"))
    }

    #[test]
    fn the_launcher_speaks_our_protocol_version_and_uid() {
        assert_eq!(python_constant("PROTOCOL"), format!("b\"{PROTOCOL}\""));
        assert_eq!(python_constant("LAUNCHER_UID"), LAUNCHER_UID.to_string());
        assert_eq!(python_constant("WORKDIR"), format!("\"{WORKDIR}\""));
        assert_eq!(python_constant("OUT"), format!("\"{ARTIFACT_DIR}\""));
        assert_eq!(python_constant("MAX_ARTIFACTS"), MAX_ARTIFACTS.to_string());
        assert_eq!(
            python_constant("MAX_ARTIFACT_BYTES"),
            "64 * 1024 * 1024",
            "MAX_ARTIFACT_BYTES is {MAX_ARTIFACT_BYTES}"
        );
        assert_eq!(
            python_constant("MAX_FILES"),
            (MAX_INPUT_FILES + 1).to_string()
        );
        assert!(!PROGRAM_UIDS.contains(&LAUNCHER_UID));
        let dockerfile = include_str!("../../runner_image/Dockerfile");
        assert!(dockerfile.contains(&format!("safe-exec:x:{LAUNCHER_UID}:{LAUNCHER_UID}:")));
        assert!(dockerfile.contains(&format!("COPY launch.py {LAUNCHER_SOURCE}")));
        assert!(dockerfile.contains(&format!("cfile=\"{LAUNCHER}\"")));
    }

    #[test]
    fn the_launcher_writes_the_frame_tags_we_read() {
        for (tag, meaning) in [
            (tags::READY, "ready"),
            (tags::STARTED, "started"),
            (tags::STDOUT, "stdout"),
            (tags::STDERR, "stderr"),
            (tags::ARTIFACT, "artifact"),
            (tags::MANIFEST, "manifest"),
            (tags::END, "end"),
            (tags::FAILED, "could not run"),
        ] {
            let documented = format!("    {}  ", tag as char);
            assert!(
                LAUNCH_PY.contains(&documented),
                "launch.py does not document tag {} ({meaning})",
                tag as char
            );
            assert!(
                LAUNCH_PY.contains(&format!("b\"{}\"", tag as char)),
                "launch.py never writes tag {} ({meaning})",
                tag as char
            );
        }
    }

    #[test]
    fn short_image_names_stand_for_the_runner_images() {
        assert_eq!(resolve_image("python"), DEFAULT_IMAGE);
        assert_eq!(resolve_image("ds"), DS_IMAGE);
        assert_eq!(resolve_image("my-runner:1"), "my-runner:1");
    }

    #[test]
    fn headers_are_what_the_launcher_parses() {
        assert_eq!(
            request_header("00112233445566778899aabbccddeeff", 1, 4096),
            "SAFE-EXEC/3 00112233445566778899aabbccddeeff 1 4096\n"
        );
        assert_eq!(file_header("main.py", 12), "12 main.py\n");
    }
}
