//! Building the runner image from the embedded context, the way `scripts/setup.sh` always has:
//! skip when an image with this context's hash is there, choose a base (yours, the official Python
//! image when it is local or can be pulled in time, else a Debian base made offline with
//! `debootstrap`), `docker build` with the classic builder from a tar archive on stdin, label the
//! result.
//!
//! Every process started here (docker, debootstrap, tar) runs in its own process group with a
//! deadline, is killed at that deadline or when the [`CancelToken`] is cancelled, and has its
//! output kept (the last lines) for the error that names what went wrong. Progress goes to a
//! callback; this module prints nothing.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use wait_timeout::ChildExt;

use super::context::{self, ContextFile};
use super::{Labels, BASE_LABEL, CONTEXT_LABEL};
use crate::runner::docker_cli::kill_group;
use crate::runner::{CancelToken, DockerCli, EngineError};
use crate::sync::lock;

/// The base used when it is local or can be pulled.
pub const OFFICIAL_BASE: &str = "python:3.11-slim";
/// The default name of the base made offline with debootstrap when no registry is reachable.
pub const OFFLINE_BASE: &str = "safe-exec-base:bookworm";
/// Environment variable: build FROM this local image (as `--base`).
pub const BASE_ENV: &str = "SAFE_EXEC_BASE";
/// Environment variable: seconds to try pulling [`OFFICIAL_BASE`] (as `--pull-timeout`).
pub const PULL_TIMEOUT_ENV: &str = "SAFE_EXEC_PULL_TIMEOUT";
/// How long a pull of [`OFFICIAL_BASE`] may take before the offline base is used instead.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(20);

const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The build itself: two short `RUN` steps on a local base.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// debootstrap downloads and unpacks about 60 packages.
const DEBOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const PRUNE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a failed step's output is kept for its error: the last lines.
const LOG_BYTES: usize = 64 * 1024;
const LOG_LINES: usize = 30;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The image's name (`safe-exec-python:3.11`).
    pub tag: String,
    /// Build FROM this local image; otherwise the base is chosen (see the module docs).
    pub base: Option<String>,
    /// Do not try to pull [`OFFICIAL_BASE`].
    pub offline: bool,
    /// The name of the base made with debootstrap (reused when it exists): [`OFFLINE_BASE`].
    pub offline_base: String,
    pub pull_timeout: Duration,
}

/// What [`build`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// An image with this context's hash (and the requested base) was already there.
    UpToDate { base: Option<String> },
    /// A new image was built from `base`.
    Built {
        base: String,
        size_bytes: Option<u64>,
    },
}

/// Why the image could not be built. Messages say what to do next.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the base image `{base}` is not a local image: pull or build it first (`docker images` lists what is local), or leave out --base/{BASE_ENV} to have one chosen")]
    BaseNotLocal { base: String },
    #[error("no local Python base and no registry reachable, and the offline base `{base}` needs root to build (debootstrap): run `sudo safe-exec image build`, or give a local base with --base IMAGE")]
    NeedsRoot { base: String },
    #[error("no local Python base and no registry reachable, and the offline base `{base}` needs `debootstrap`, which is not installed: `apt-get install debootstrap` (Debian/Ubuntu), or give a local base with --base IMAGE")]
    DebootstrapMissing { base: String },
    #[error(
        "debootstrap failed ({detail}) making the offline base; last lines of its output:\n{log}\nIt needs Debian's package mirror and about 500 MB under /var/tmp; or give a local base with --base IMAGE"
    )]
    Debootstrap { detail: String, log: String },
    #[error(
        "`docker import` of the offline base failed ({detail}); last lines of its output:\n{log}"
    )]
    Import { detail: String, log: String },
    #[error("`docker build` of `{tag}` from `{base}` failed ({detail}); last lines of its output:\n{log}\nRetry with the same command; a base that is not what the Dockerfile needs (Python 3.8 or later on PATH) fails its checks")]
    Build {
        tag: String,
        base: String,
        detail: String,
        log: String,
    },
    #[error("{what} did not finish within {secs} s and was stopped: is the engine (or the network) overloaded? Try again")]
    Timeout { what: String, secs: u64 },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// Build `request.tag` from the embedded context unless an image with its hash is there.
/// `progress` gets one line per step (text from the engine in it is already sanitised).
pub fn build(
    docker: &DockerCli,
    request: &BuildRequest,
    progress: &mut dyn FnMut(&str),
    cancel: &CancelToken,
) -> Result<Built, ImageError> {
    let hash = context::hash();
    let shown_tag = crate::sanitize::text(&request.tag).into_owned();
    if let Some(labels) = super::labels(docker, &request.tag)? {
        let wanted_base = request.base.as_deref();
        if labels.built_from(hash) && wanted_base.is_none_or(|base| labels.base_is(base)) {
            return Ok(Built::UpToDate { base: labels.base });
        }
        progress(&format!(
            "runner image {shown_tag} is stale ({}): rebuilding",
            stale_reason(&labels, hash, wanted_base)
        ));
    }
    let base = choose_base(docker, request, progress, cancel)?;
    progress(&format!(
        "building runner image {shown_tag} from {} (context {})",
        crate::sanitize::text(&base),
        &hash[..12]
    ));
    let target = Target {
        tag: &request.tag,
        files: context::FILES,
        hash,
        from_arg: "BASE",
        from: &base,
        // The Dockerfile's steps need no network; without one they do not depend on the
        // engine's default bridge either.
        network: "none",
    };
    docker_build(docker, &target, cancel)?;
    prune_dangling(docker);
    let size_bytes = image_size(docker, &request.tag);
    Ok(Built::Built { base, size_bytes })
}

/// Build the data-science image `tag` from `runner_image/ds/` on the runner image `runner` (which
/// must be there: [`build`] it first), unless it is current: built from this binary's contexts,
/// on `runner`. Its steps install numpy, pandas, matplotlib and scipy (Debian's packages on a
/// Debian base, pip on the official one), so this build needs the network.
pub fn build_ds(
    docker: &DockerCli,
    tag: &str,
    runner: &str,
    progress: &mut dyn FnMut(&str),
    cancel: &CancelToken,
) -> Result<Built, ImageError> {
    let hash = context::ds_hash();
    let shown_tag = crate::sanitize::text(tag).into_owned();
    if let Some(labels) = super::labels(docker, tag)? {
        if labels.built_from(hash) && labels.base_is(runner) {
            return Ok(Built::UpToDate { base: labels.base });
        }
        progress(&format!(
            "data-science image {shown_tag} is stale ({}): rebuilding",
            stale_reason(&labels, hash, Some(runner))
        ));
    }
    progress(&format!(
        "building data-science image {shown_tag} on {} (context {}; it downloads numpy, pandas, \
         matplotlib and scipy: a few minutes)",
        crate::sanitize::text(runner),
        &hash[..12]
    ));
    let target = Target {
        tag,
        files: context::DS_FILES,
        hash,
        from_arg: "RUNNER",
        from: runner,
        // Its steps download packages: the host's network, which does not depend on the
        // engine's default bridge (the build runs only this binary's Dockerfile).
        network: "host",
    };
    docker_build(docker, &target, cancel)?;
    prune_dangling(docker);
    Ok(Built::Built {
        base: runner.to_owned(),
        size_bytes: image_size(docker, tag),
    })
}

/// The image a tag named before a rebuild is now dangling: remove it (and any other dangling
/// runner image), as setup.sh always has. Images still used by containers are kept by the engine.
fn prune_dangling(docker: &DockerCli) {
    let prune: Vec<String> = ["image", "prune", "--force", "--filter"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .chain([format!("label={CONTEXT_LABEL}")])
        .collect();
    let _ = docker.call(&prune, PRUNE_TIMEOUT, None);
}

fn stale_reason(labels: &Labels, hash: &str, wanted_base: Option<&str>) -> String {
    if !labels.built_from(hash) {
        return match &labels.context {
            Some(other) => format!(
                "built from context {}, this binary's is {}",
                crate::sanitize::text(other.get(..12).unwrap_or(other)),
                &hash[..12]
            ),
            None => "it has no safe-exec.context label".to_owned(),
        };
    }
    format!(
        "its base is {}, not {}",
        crate::sanitize::text(labels.base.as_deref().unwrap_or("unknown")),
        crate::sanitize::text(wanted_base.unwrap_or("unknown"))
    )
}

/// The base to build FROM: the requested one (which must be local), else [`OFFICIAL_BASE`] when it
/// is local or can be pulled within the pull timeout, else the offline base (made when missing).
fn choose_base(
    docker: &DockerCli,
    request: &BuildRequest,
    progress: &mut dyn FnMut(&str),
    cancel: &CancelToken,
) -> Result<String, ImageError> {
    if let Some(base) = &request.base {
        return if image_exists(docker, base)? {
            Ok(base.clone())
        } else {
            Err(ImageError::BaseNotLocal {
                base: crate::sanitize::text(base).into_owned(),
            })
        };
    }
    if image_exists(docker, OFFICIAL_BASE)? {
        return Ok(OFFICIAL_BASE.to_owned());
    }
    if !request.offline {
        progress(&format!(
            "trying to pull {OFFICIAL_BASE} (at most {} s)",
            request.pull_timeout.as_secs_f64()
        ));
        let pull = ["pull", "--quiet", OFFICIAL_BASE].map(String::from);
        match docker.call_cancellable(&pull, request.pull_timeout, None, cancel) {
            Ok(_) => return Ok(OFFICIAL_BASE.to_owned()),
            Err(EngineError::Cancelled { .. }) => return Err(ImageError::Interrupted),
            // Not a registry problem: the same error would end every later step.
            Err(
                error @ (EngineError::Unreachable { .. }
                | EngineError::PermissionDenied { .. }
                | EngineError::CliMissing { .. }),
            ) => return Err(error.into()),
            Err(_) => progress("no container registry reachable: using an offline Debian base"),
        }
    }
    let offline_base = &request.offline_base;
    if image_exists(docker, offline_base)? {
        progress(&format!(
            "reusing offline base {}",
            crate::sanitize::text(offline_base)
        ));
    } else {
        build_offline_base(docker, offline_base, progress, cancel)?;
    }
    Ok(offline_base.clone())
}

/// Is `image` local? Engine trouble is an error, not a "no".
fn image_exists(docker: &DockerCli, image: &str) -> Result<bool, EngineError> {
    let args = ["image", "inspect", "--format", "{{.Id}}", image].map(String::from);
    match docker.call(&args, INSPECT_TIMEOUT, Some(image)) {
        Ok(_) => Ok(true),
        Err(EngineError::ImageMissing { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

fn image_size(docker: &DockerCli, image: &str) -> Option<u64> {
    let args = ["image", "inspect", "--format", "{{.Size}}", image].map(String::from);
    let output = docker.call(&args, INSPECT_TIMEOUT, Some(image)).ok()?;
    output.stdout.trim().parse().ok()
}

/// One image to build from an embedded context.
struct Target<'a> {
    tag: &'a str,
    files: &'static [ContextFile],
    /// The context's hash, for the [`CONTEXT_LABEL`].
    hash: &'static str,
    /// The Dockerfile's `ARG` naming the image it is built `FROM`, and that image (also the
    /// [`BASE_LABEL`]).
    from_arg: &'static str,
    from: &'a str,
    /// `--network` for the build's steps.
    network: &'static str,
}

/// `docker build -` with the classic builder (it works with every engine version, and Debian's
/// docker.io has no buildx) and the context archive on stdin.
fn docker_build(
    docker: &DockerCli,
    target: &Target,
    cancel: &CancelToken,
) -> Result<(), ImageError> {
    let archive = context::tar_of(target.files).map_err(|source| ImageError::Io {
        what: "cannot make the build context archive".to_owned(),
        source,
    })?;
    let args = [
        "build".to_owned(),
        "--build-arg".to_owned(),
        format!("{}={}", target.from_arg, target.from),
        "--label".to_owned(),
        format!("{CONTEXT_LABEL}={}", target.hash),
        "--label".to_owned(),
        format!("{BASE_LABEL}={}", target.from),
        // Intermediate containers go even when a step fails: the engine is shared.
        "--force-rm".to_owned(),
        "--network".to_owned(),
        target.network.to_owned(),
        "--tag".to_owned(),
        target.tag.to_owned(),
        "-".to_owned(),
    ];
    let mut command = docker.command(&args);
    command.env("DOCKER_BUILDKIT", "0");
    let child = docker.spawn(with_pipes(&mut command, true))?;
    let finished = supervise(
        child,
        Some(archive),
        BUILD_TIMEOUT,
        cancel,
        "`docker build`",
    )?;
    if finished.status.success() {
        return Ok(());
    }
    // An unreachable engine is the same error as everywhere else, with its fix.
    match crate::runner::docker_cli::classify_failure("build", &finished.log, None) {
        error @ (EngineError::Unreachable { .. } | EngineError::PermissionDenied { .. }) => {
            Err(error.into())
        }
        _ => Err(ImageError::Build {
            tag: crate::sanitize::text(target.tag).into_owned(),
            base: crate::sanitize::text(target.from).into_owned(),
            detail: describe_status(finished.status),
            log: finished.tail(),
        }),
    }
}

/// Make the offline base `name`: `debootstrap --variant=minbase --include=python3 bookworm` from
/// Debian's default mirror into a directory under `/var/tmp`, trimmed of caches and docs, then
/// `docker import`ed. Needs root and debootstrap.
fn build_offline_base(
    docker: &DockerCli,
    name: &str,
    progress: &mut dyn FnMut(&str),
    cancel: &CancelToken,
) -> Result<(), ImageError> {
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::NeedsRoot {
            base: crate::sanitize::text(name).into_owned(),
        });
    }
    let shown = crate::sanitize::text(name).into_owned();
    let Some(debootstrap) = find_on_path("debootstrap") else {
        return Err(ImageError::DebootstrapMissing { base: shown });
    };
    let root = RootDir::create()?;
    progress(&format!(
        "building offline base {shown} with debootstrap (about a minute)"
    ));
    let started = Instant::now();
    // bookworm's python3 is Python 3.11 with the full standard library (python3-minimal lacks
    // json and hmac, which programs and the launcher import).
    let mut debootstrap = Command::new(debootstrap);
    debootstrap
        .args(["--variant=minbase", "--include=python3", "bookworm"])
        .arg(root.path())
        .process_group(0);
    let child = with_pipes(&mut debootstrap, false)
        .spawn()
        .map_err(|source| ImageError::Spawn {
            program: "debootstrap".to_owned(),
            source,
        })?;
    let finished = supervise(child, None, DEBOOTSTRAP_TIMEOUT, cancel, "debootstrap")?;
    if !finished.status.success() {
        return Err(ImageError::Debootstrap {
            detail: describe_status(finished.status),
            log: finished.tail(),
        });
    }
    root.trim()?;
    import_rootfs(docker, root.path(), name, cancel)?;
    drop(root);
    progress(&format!(
        "offline base {shown} built in {} s",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// The first executable `program` in `PATH` (debootstrap lives in `/usr/sbin`, which is on
/// root's `PATH`).
fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// `tar -C ROOT -c . | docker import - NAME`, with the image settings the Dockerfile
/// expects of a base.
fn import_rootfs(
    docker: &DockerCli,
    root: &Path,
    name: &str,
    cancel: &CancelToken,
) -> Result<(), ImageError> {
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*"])
        .args(["--exclude=./sys/*", "-C"])
        .arg(root)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut tar = tar.spawn().map_err(|source| ImageError::Spawn {
        program: "tar".to_owned(),
        source,
    })?;
    let archive = tar.stdout.take().expect("piped");
    let args = [
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        "CMD [\"python3\"]",
        "-",
        name,
    ];
    let mut import = docker.command(args);
    import
        .stdin(Stdio::from(archive))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let import = match docker.spawn(&mut import) {
        Ok(child) => child,
        Err(error) => {
            kill_group(&mut tar);
            return Err(error.into());
        }
    };
    let finished = supervise(import, None, IMPORT_TIMEOUT, cancel, "`docker import`");
    // The import has read everything (or is gone): tar is done or has nobody to write to.
    let tar_status = tar.wait_timeout(Duration::from_secs(10)).ok().flatten();
    if tar_status.is_none() {
        kill_group(&mut tar);
    }
    let finished = finished?;
    if !finished.status.success() {
        return Err(ImageError::Import {
            detail: describe_status(finished.status),
            log: finished.tail(),
        });
    }
    match tar_status {
        Some(status) if status.success() => Ok(()),
        other => Err(ImageError::Import {
            detail: format!(
                "tar of the root filesystem {}",
                other.map_or("did not finish".to_owned(), describe_status)
            ),
            log: String::new(),
        }),
    }
}

/// The directory debootstrap fills, under `/var/tmp` (room, and not a tmpfs). Removed on drop,
/// after unmounting whatever a killed debootstrap left mounted inside it (its `/proc`, `/sys`):
/// a removal must never reach into those.
struct RootDir {
    path: PathBuf,
}

impl RootDir {
    fn create() -> Result<RootDir, ImageError> {
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let path = PathBuf::from(format!("/var/tmp/safe-exec-rootfs.{}", hex::encode(random)));
        std::fs::create_dir(&path).map_err(|source| ImageError::Io {
            what: format!("cannot create {}", path.display()),
            source,
        })?;
        Ok(RootDir { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Drop what the image does not need: package caches and lists, logs, docs, temp files.
    fn trim(&self) -> Result<(), ImageError> {
        for dir in [
            "var/lib/apt/lists",
            "var/log",
            "tmp",
            "var/tmp",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "var/cache/apt/archives",
        ] {
            self.empty(&self.path.join(dir), |_| true)?;
        }
        self.empty(&self.path.join("var/cache/apt"), |name| {
            name.to_string_lossy().ends_with(".bin")
        })
    }

    /// Remove the entries of `dir` whose name `select` accepts (a missing `dir` is fine).
    fn empty(
        &self,
        dir: &Path,
        select: impl Fn(&std::ffi::OsStr) -> bool,
    ) -> Result<(), ImageError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if !select(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            // `archives/partial` and the like are directories we keep empty, not errors.
            if let Err(source) = removed {
                if source.kind() != std::io::ErrorKind::NotFound {
                    return Err(ImageError::Io {
                        what: format!("cannot remove {}", path.display()),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Mount points strictly inside this directory, deepest first.
    fn mounts_inside(&self) -> Vec<PathBuf> {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut inside: Vec<PathBuf> = table
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(unescape_mount_path)
            .filter(|path| path.starts_with(&self.path) && *path != self.path)
            .collect();
        inside.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        inside
    }
}

impl Drop for RootDir {
    fn drop(&mut self) {
        for mount in self.mounts_inside() {
            if let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2(2) reads a NUL-terminated path we own; MNT_DETACH only detaches.
                unsafe {
                    libc::umount2(path.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
        if self.mounts_inside().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_mount_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// `command` with its output piped to us, and its stdin too when there is `stdin` to give.
fn with_pipes(command: &mut Command, stdin: bool) -> &mut Command {
    command
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
}

/// A supervised process that ended, with the end of what it printed.
struct Finished {
    status: ExitStatus,
    log: String,
}

impl Finished {
    /// The last [`LOG_LINES`] lines of the output, sanitised, indented for an error message.
    fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        let start = lines.len().saturating_sub(LOG_LINES);
        lines[start..]
            .iter()
            .map(|line| format!("  {}", crate::sanitize::text(line)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What wakes [`supervise`].
enum Wake {
    PipeClosed,
    Cancelled,
}

/// Feed `input` to `child`'s stdin (then close it), collect the end of its stdout and stderr, and
/// wait for it until `timeout`; killed (with its process group) at the deadline or on
/// cancellation.
fn supervise(
    mut child: Child,
    input: Option<Vec<u8>>,
    timeout: Duration,
    cancel: &CancelToken,
    what: &str,
) -> Result<Finished, ImageError> {
    let deadline = Instant::now() + timeout;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // A client that dies early closes the pipe: the write fails and the exit status says why.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let (done, wakes) = mpsc::channel();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|pipe| {
        let log = Arc::clone(&log);
        let done = done.clone();
        thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 8192];
                while let Ok(read) = pipe.read(&mut chunk) {
                    if read == 0 {
                        break;
                    }
                    let mut log = lock(&log);
                    log.extend_from_slice(&chunk[..read]);
                    if log.len() > LOG_BYTES {
                        let excess = log.len() - LOG_BYTES;
                        log.drain(..excess);
                    }
                }
            }
            let _ = done.send(Wake::PipeClosed);
        })
    })
    .collect();
    let _subscription = cancel.on_cancel(move || {
        let _ = done.send(Wake::Cancelled);
    });
    let mut closed = 0;
    while closed < readers.len() {
        match wakes.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Wake::PipeClosed) => closed += 1,
            Ok(Wake::Cancelled) => {
                kill_group(&mut child);
                return Err(ImageError::Interrupted);
            }
            Err(_) => break,
        }
    }
    let status = if closed == readers.len() {
        child
            .wait_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
            .flatten()
    } else {
        None
    };
    let Some(status) = status else {
        kill_group(&mut child);
        return Err(ImageError::Timeout {
            what: what.to_owned(),
            secs: timeout.as_secs(),
        });
    };
    for reader in readers {
        let _ = reader.join();
    }
    let log = String::from_utf8_lossy(&lock(&log)).into_owned();
    Ok(Finished { status, log })
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by {}", crate::signals::name(signal)),
        _ => "ended abnormally".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path("/var/tmp/a\\040b/proc"),
            PathBuf::from("/var/tmp/a b/proc")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mount_path("/odd\\"), PathBuf::from("/odd\\"));
    }

    #[test]
    fn a_supervised_process_gives_its_status_and_output() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "cat; echo err >&2; exit 3"])
            .process_group(0);
        let child = with_pipes(&mut command, true).spawn().unwrap();
        let finished = supervise(
            child,
            Some(b"from stdin\n".to_vec()),
            Duration::from_secs(30),
            &CancelToken::new(),
            "sh",
        )
        .unwrap();
        assert_eq!(finished.status.code(), Some(3));
        assert!(finished.log.contains("from stdin"), "{}", finished.log);
        assert!(finished.tail().contains("  err"), "{}", finished.tail());
    }

    #[test]
    fn a_supervised_process_is_killed_at_its_deadline_or_on_cancel() {
        let spawn = || {
            let mut command = Command::new("sleep");
            command.arg("30").process_group(0);
            with_pipes(&mut command, false).spawn().unwrap()
        };
        let started = Instant::now();
        let error = supervise(
            spawn(),
            None,
            Duration::from_millis(200),
            &CancelToken::new(),
            "sleep",
        )
        .err()
        .unwrap();
        assert!(matches!(error, ImageError::Timeout { .. }), "{error}");
        let cancel = CancelToken::new();
        cancel.cancel();
        let error = supervise(spawn(), None, Duration::from_secs(30), &cancel, "sleep")
            .err()
            .unwrap();
        assert!(matches!(error, ImageError::Interrupted), "{error}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_sanitised() {
        let log = (0..100).map(|n| format!("line {n}\n")).collect::<String>() + "bad \x1b[31m";
        let finished = Finished {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            log,
        };
        let tail = finished.tail();
        assert_eq!(tail.lines().count(), LOG_LINES);
        assert!(tail.starts_with("  line 71\n"), "{tail}");
        assert!(tail.ends_with("  bad \\u{1b}[31m"), "{tail}");
    }
}
