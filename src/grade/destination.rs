//! Report files (`--json`, `--junit`, `--gradescope`): claimed before anything runs, written when
//! grading is done, replaced whole where that is possible.
//!
//! Grading can take minutes; a report path that cannot be written must be found before the first
//! container starts, not after the last one. [`Destination::claim`] therefore creates the report's
//! temporary file right away, next to the destination (same directory, so the final rename stays
//! on one file system): that proves the directory exists and lets us create files in it. The
//! temporary file is created with mode 0600 and then given its final mode (an existing file's,
//! exactly), so no one else can open it in between. When grading is done,
//! [`Destination::write`] writes the report into it, flushes it to disk and renames it over the
//! destination. Readers (a CI step, the Gradescope harness) see the previous file or the complete
//! new report, never a half-written one; when writing fails the temporary file is removed and the
//! destination is left as it was. Dropping a claim (an interrupted batch, a malformed suite found
//! later) removes the temporary file; only a hard kill (SIGKILL, or the second Ctrl-C, which exits
//! at once) can leave a `.NAME.*.safe-exec.tmp` behind.
//!
//! Where the rename is refused although the file itself may be written, the file is overwritten
//! in place instead (truncated, then written: not atomic, but what writing it means there):
//!
//! - an existing file we may write in a directory where we may not create files (a harness that
//!   prepared the file for us): found when claimed;
//! - a file that is a mount point (`docker run -v $PWD/results.json:/autograder/results/results.json`
//!   bind-mounts one file; renaming over it fails with EBUSY), a file owned by someone else in a
//!   sticky directory such as `/tmp` (EPERM), or any other rename refused with EBUSY, EPERM,
//!   EACCES or EXDEV: found only when the rename fails, and then overwritten.
//!
//! A destination that is one of our inherited streams — `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
//! `/proc/self/fd/N`, or any path naming the same file as our standard output or error (`> log`
//! and `--json log`) — is written through that stream, after what was written to it before
//! (reopening it would write from the start of a redirected file, and replacing it would destroy
//! the file `>> log` appends to). Any other existing file that is not a regular one (a terminal,
//! a pipe, a device) is opened for writing when claimed and written in place.
//!
//! A symbolic link to a regular file is followed: the file it points to is replaced and the link
//! stays. A dangling symbolic link is refused (replacing it with a file would silently drop the
//! link; creating the file it points to might create it anywhere).
//!
//! This module knows nothing of what a report contains.

use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// A report that cannot be written where its flag says. Before grading nothing has run; after
/// grading the other reports were written regardless.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot write {flag} {}: {}", crate::sanitize::path(.path), crate::sanitize::text(.problem))]
pub struct DestinationError {
    /// The flag that named the path (`--json`, ...).
    pub flag: &'static str,
    /// The path as given on the command line.
    pub path: PathBuf,
    pub problem: String,
}

/// A claimed report destination, ready to be written once.
#[derive(Debug)]
pub struct Destination {
    flag: &'static str,
    path: PathBuf,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// A regular file, new or existing (`path`, symbolic links resolved), replaced by `temp`;
    /// `existing` is the file opened for writing, overwritten in place if the rename is refused.
    Replace {
        temp: TempFile,
        path: PathBuf,
        existing: Option<File>,
    },
    /// An existing regular file (`path`, resolved) in a directory where no file can be created:
    /// truncated and written in place.
    Overwrite { file: File, path: PathBuf },
    /// An inherited stream, or an existing file that is not a regular one, opened for writing:
    /// written where it stands.
    InPlace(File),
}

impl Destination {
    /// Check that `path` can receive a report and reserve what writing it will need.
    pub fn claim(flag: &'static str, path: &Path) -> Result<Destination, DestinationError> {
        let problem = |problem: String| DestinationError {
            flag,
            path: path.to_path_buf(),
            problem,
        };
        let destination = |target| Destination {
            flag,
            path: path.to_path_buf(),
            target,
        };
        if let Some(fd) = descriptor_named(path) {
            let file = inherited(fd).map_err(|error| problem(describe_descriptor(&error, fd)))?;
            return Ok(destination(Target::InPlace(file)));
        }
        let metadata = fs::metadata(path);
        // `--json log > log` (or a link to `/dev/stdout`): the file our own output goes to;
        // written after that output.
        if let Some(fd) = metadata.as_ref().ok().and_then(standard_stream_of) {
            let file = inherited(fd).map_err(|error| problem(describe_descriptor(&error, fd)))?;
            return Ok(destination(Target::InPlace(file)));
        }
        let target = match metadata {
            Ok(metadata) if metadata.is_dir() => {
                return Err(problem(
                    "it is a directory: give a file name (e.g. DIR/report.json)".to_owned(),
                ))
            }
            Ok(metadata) if metadata.is_file() => {
                let resolved = fs::canonicalize(path).map_err(|error| problem(describe(&error)))?;
                // Replacing a file we may not write to would succeed (the directory is what
                // counts for a rename); refuse it, as writing it in place would be refused.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&resolved)
                    .map_err(|error| problem(describe(&error)))?;
                match TempFile::next_to(&resolved, Some(metadata.permissions())) {
                    Ok(temp) => Target::Replace {
                        temp,
                        path: resolved,
                        existing: Some(file),
                    },
                    Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                        Target::Overwrite {
                            file,
                            path: resolved,
                        }
                    }
                    Err(error) => return Err(problem(describe_create(&error, &resolved))),
                }
            }
            Ok(_) => Target::InPlace(
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|error| problem(describe(&error)))?,
            ),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Ok(link) = fs::read_link(path) {
                    return Err(problem(format!(
                        "it is a symbolic link to {}, which does not exist: create that file first, or remove the link",
                        link.display()
                    )));
                }
                if path.file_name().is_none() {
                    return Err(problem(
                        "give a file name (e.g. DIR/report.json)".to_owned(),
                    ));
                }
                let temp = TempFile::next_to(path, None)
                    .map_err(|error| problem(describe_create(&error, path)))?;
                Target::Replace {
                    temp,
                    path: path.to_path_buf(),
                    existing: None,
                }
            }
            Err(error) => return Err(problem(describe(&error))),
        };
        Ok(destination(target))
    }

    pub fn flag(&self) -> &'static str {
        self.flag
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file this destination replaces, as an absolute path without symbolic links, to tell
    /// whether two flags name the same file; `None` for one written in place.
    pub fn replaces(&self) -> Option<PathBuf> {
        match &self.target {
            Target::Replace { path, .. } | Target::Overwrite { path, .. } => {
                let parent = parent_dir(path);
                let name = path.file_name()?;
                Some(fs::canonicalize(parent).ok()?.join(name))
            }
            Target::InPlace(_) => None,
        }
    }

    /// Write `contents` as the whole report.
    pub fn write(self, contents: &[u8]) -> Result<(), DestinationError> {
        self.write_with(contents, |from, to| fs::rename(from, to))
    }

    /// [`Destination::write`], renaming with `rename` (a seam for tests: a mount point or a
    /// sticky directory cannot be set up in a unit test, a refused rename can).
    fn write_with(
        self,
        contents: &[u8],
        rename: impl FnOnce(&Path, &Path) -> io::Result<()>,
    ) -> Result<(), DestinationError> {
        let problem = |error: io::Error| DestinationError {
            flag: self.flag,
            path: self.path.clone(),
            problem: describe(&error),
        };
        match self.target {
            Target::Replace {
                mut temp,
                path,
                existing,
            } => {
                temp.file.write_all(contents).map_err(problem)?;
                // Some file systems report a full disk or a quota only here (NFS, delayed
                // allocation); a report renamed into place before that would be truncated.
                temp.file.sync_all().map_err(problem)?;
                match temp.persist(&path, rename) {
                    Ok(()) => Ok(()),
                    Err(error) if rename_refused(&error) => {
                        // A mount point, someone else's file in a sticky directory: the file
                        // cannot be replaced, but it may be written. `temp` is removed on drop.
                        let file = match existing {
                            Some(file) => file,
                            None => OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .map_err(|_| problem(error))?,
                        };
                        overwrite(file, contents).map_err(problem)
                    }
                    Err(error) => Err(problem(error)),
                }
            }
            Target::Overwrite { file, .. } => overwrite(file, contents).map_err(problem),
            Target::InPlace(mut file) => file
                .write_all(contents)
                .and_then(|()| file.flush())
                .map_err(problem),
        }
    }
}

/// Truncate `file` and write `contents` into it, to disk.
fn overwrite(mut file: File, contents: &[u8]) -> io::Result<()> {
    file.set_len(0)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Whether a failed rename means "this name cannot be replaced" (while the file may still be
/// written): EBUSY for a mount point, EPERM or EACCES for a sticky directory or a file system
/// that refuses, EXDEV for a bind mount from another file system.
fn rename_refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBUSY | libc::EPERM | libc::EACCES | libc::EXDEV)
    )
}

/// The file descriptor `path` names literally: `/dev/stdout` (1), `/dev/stderr` (2),
/// `/dev/fd/N`, `/proc/self/fd/N` or `/proc/PID/fd/N` with our own PID.
fn descriptor_named(path: &Path) -> Option<RawFd> {
    let path = path.to_str()?;
    match path {
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => {}
    }
    let ours = format!("/proc/{}/fd/", std::process::id());
    let number = ["/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/", &ours]
        .into_iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// Our standard output (1) or error (2), if it is the file `metadata` describes.
fn standard_stream_of(metadata: &Metadata) -> Option<RawFd> {
    let same = |stream: std::os::fd::BorrowedFd<'_>| {
        let stream = File::from(stream.try_clone_to_owned().ok()?)
            .metadata()
            .ok()?;
        Some(stream.dev() == metadata.dev() && stream.ino() == metadata.ino())
    };
    if same(io::stdout().as_fd()) == Some(true) {
        Some(1)
    } else if same(io::stderr().as_fd()) == Some(true) {
        Some(2)
    } else {
        None
    }
}

/// A writable duplicate of the descriptor `fd` we inherited, sharing its file offset and flags
/// (`O_APPEND` included), so that what we write follows what was written before.
fn inherited(fd: RawFd) -> io::Result<File> {
    // SAFETY: fcntl(F_GETFD / F_GETFL) reads no memory of ours; a descriptor that is not open
    // gives EBADF.
    let descriptor_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if descriptor_flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // Everything we open ourselves is close-on-exec (the standard library's default); a
    // descriptor handed to us by a shell's redirection or process substitution is not.
    if fd > 2 && descriptor_flags & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: as above.
    let status_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if status_flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if status_flags & libc::O_ACCMODE == libc::O_RDONLY {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_DUPFD_CLOEXEC reads no memory of ours and returns a new descriptor or -1.
    let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if duplicate < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `duplicate` was just created and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(duplicate) })
}

/// Why the inherited descriptor `fd` cannot take a report.
fn describe_descriptor(error: &io::Error, fd: RawFd) -> String {
    let name = match fd {
        1 => "standard output".to_owned(),
        2 => "standard error".to_owned(),
        _ => format!("file descriptor {fd}"),
    };
    if error.raw_os_error() == Some(libc::EBADF) {
        format!("{name} is not open for writing in safe-exec (redirect it, e.g. `{fd}>FILE`)")
    } else {
        format!("{name}: {}", describe(error))
    }
}

/// A file created next to a destination, removed when dropped unless renamed into place.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Create `.NAME.PID-N.safe-exec.tmp` in `destination`'s directory, with `permissions` (an
    /// existing file's, kept exactly) or those a new file gets (0666 less the umask).
    ///
    /// With `permissions` the file is created 0600 and then given them, so that it is never
    /// more open than both the destination and 0600. Without, it is created with the mode the
    /// report would get from `open(2)` anyway: it is empty until the report is written, and then
    /// exactly as readable as the report itself (finding the umask otherwise means changing it).
    fn next_to(destination: &Path, permissions: Option<Permissions>) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(destination);
        // Short enough that the temporary name stays within NAME_MAX (255 bytes) whatever the
        // destination's name.
        let name: String = destination
            .file_name()
            .map(|name| name.to_string_lossy().chars().take(64).collect())
            .unwrap_or_default();
        let mode = if permissions.is_some() { 0o600 } else { 0o666 };
        let mut attempts = 0;
        loop {
            let path = dir.join(format!(
                ".{name}.{}-{}.safe-exec.tmp",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            // `create_new`: never open (or follow a link planted at) a name that already exists.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        file,
                        persisted: false,
                    };
                    if let Some(permissions) = permissions {
                        temp.file.set_permissions(permissions)?;
                    }
                    return Ok(temp);
                }
                // Left behind by an earlier process with the same pid: take the next name.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn persist(
        mut self,
        destination: &Path,
        rename: impl FnOnce(&Path, &Path) -> io::Result<()>,
    ) -> io::Result<()> {
        rename(&self.path, destination)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Why a file could not be created next to `destination`, naming its directory.
fn describe_create(error: &io::Error, destination: &Path) -> String {
    let dir = parent_dir(destination).display();
    match error.kind() {
        io::ErrorKind::NotFound => format!("the directory {dir} does not exist: create it first"),
        io::ErrorKind::NotADirectory => format!("{dir} is not a directory"),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied: cannot create files in {dir}")
        }
        io::ErrorKind::ReadOnlyFilesystem => format!("{dir} is on a read-only file system"),
        _ => format!("cannot create files in {dir}: {}", describe(error)),
    }
}

fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::NotADirectory => "a component of the path is not a directory".to_owned(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Permissions of a report file created from nothing: 0666 less the umask, as `fs::write` gives.
    fn default_mode() -> u32 {
        let probe = tempfile::tempdir().unwrap();
        let path = probe.path().join("probe");
        fs::write(&path, "").unwrap();
        fs::metadata(&path).unwrap().permissions().mode() & 0o777
    }

    fn refused(path: &Path) -> DestinationError {
        Destination::claim("--json", path).unwrap_err()
    }

    #[test]
    fn unusable_paths_are_refused_with_the_flag_path_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let error = refused(&dir.path().join("no-such-dir/x.json"));
        assert_eq!(error.flag, "--json");
        assert!(error.to_string().starts_with("cannot write --json "));
        assert!(error.to_string().contains("no-such-dir/x.json"), "{error}");
        assert!(error.problem.contains("does not exist"), "{error}");

        let error = refused(dir.path());
        assert!(error.problem.contains("is a directory"), "{error}");

        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let error = refused(&file.join("x.json"));
        assert!(error.problem.contains("not a directory"), "{error}");

        // Even root cannot create files in sysfs.
        let error = refused(Path::new("/sys/x.json"));
        assert!(error.problem.contains("/sys"), "{error}");

        assert_eq!(listing(dir.path()), ["file"], "nothing left behind");
    }

    #[test]
    fn a_claim_writes_the_report_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grade.json");
        let claim = Destination::claim("--json", &path).unwrap();
        assert_eq!(
            claim.replaces(),
            Some(fs::canonicalize(dir.path()).unwrap().join("grade.json"))
        );
        // Claimed: the temporary file exists, the report does not yet.
        let names = listing(dir.path());
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with(".grade.json.") && names[0].ends_with(".safe-exec.tmp"),
            "{names:?}"
        );
        claim.write(b"{}\n").unwrap();
        assert_eq!(listing(dir.path()), ["grade.json"]);
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            default_mode()
        );
    }

    #[test]
    fn a_dropped_claim_leaves_the_destination_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.xml");
        drop(Destination::claim("--junit", &fresh).unwrap());
        let old = dir.path().join("old.json");
        fs::write(&old, "previous report").unwrap();
        drop(Destination::claim("--json", &old).unwrap());
        assert_eq!(listing(dir.path()), ["old.json"]);
        assert_eq!(fs::read_to_string(&old).unwrap(), "previous report");
    }

    #[test]
    fn an_existing_file_is_replaced_keeping_its_permissions_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "previous report, longer than the new one").unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let claim = Destination::claim("--json", &link).unwrap();
        assert_eq!(
            claim.replaces(),
            Some(fs::canonicalize(dir.path()).unwrap().join("real.json"))
        );
        claim.write(b"new").unwrap();
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(listing(dir.path()), ["link.json", "real.json"]);
    }

    #[test]
    fn a_writable_file_in_a_locked_directory_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        let report = locked.join("results.json");
        fs::write(&report, "a placeholder longer than the report").unwrap();
        fs::set_permissions(&locked, Permissions::from_mode(0o555)).unwrap();
        // Root may create files anyway (and replaces the file); anyone else overwrites it.
        let written =
            Destination::claim("--gradescope", &report).and_then(|claim| claim.write(b"{}"));
        fs::set_permissions(&locked, Permissions::from_mode(0o755)).unwrap();
        written.unwrap();
        assert_eq!(fs::read_to_string(&report).unwrap(), "{}");
        assert_eq!(listing(&locked), ["results.json"]);
    }

    #[test]
    fn devices_are_written_in_place_and_their_errors_reported() {
        let null = Destination::claim("--junit", Path::new("/dev/null")).unwrap();
        assert_eq!(null.replaces(), None);
        null.write(b"<testsuites/>").unwrap();
        // /dev/full: every write fails as on a full disk.
        let full = Destination::claim("--json", Path::new("/dev/full")).unwrap();
        let error = full.write(b"{}").unwrap_err();
        assert_eq!(error.path, Path::new("/dev/full"));
        assert!(error.problem.contains("No space left on device"), "{error}");
    }

    /// A claim on `path` written with a rename that fails with `errno`.
    fn write_refused(path: &Path, errno: i32, contents: &[u8]) -> Result<(), DestinationError> {
        Destination::claim("--gradescope", path)
            .unwrap()
            .write_with(contents, |_, _| Err(io::Error::from_raw_os_error(errno)))
    }

    #[test]
    fn a_file_that_cannot_be_renamed_over_is_overwritten_in_place() {
        // A bind-mounted file (EBUSY), someone else's file in a sticky directory (EPERM, EACCES),
        // a bind mount across file systems (EXDEV): all refuse the rename after grading.
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("results.json");
        for errno in [libc::EBUSY, libc::EPERM, libc::EACCES, libc::EXDEV] {
            fs::write(&report, "a placeholder longer than the report").unwrap();
            fs::set_permissions(&report, Permissions::from_mode(0o640)).unwrap();
            let inode = fs::metadata(&report).unwrap().ino();
            write_refused(&report, errno, b"{\"score\": 1}").unwrap();
            assert_eq!(fs::read_to_string(&report).unwrap(), "{\"score\": 1}");
            let metadata = fs::metadata(&report).unwrap();
            assert_eq!(metadata.ino(), inode, "written in place (errno {errno})");
            assert_eq!(metadata.permissions().mode() & 0o777, 0o640);
            assert_eq!(
                listing(dir.path()),
                ["results.json"],
                "temporary file removed"
            );
        }
    }

    #[test]
    fn a_refused_rename_of_a_new_file_or_another_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        // No file to overwrite: the rename's own error is the problem.
        let fresh = dir.path().join("fresh.json");
        let error = write_refused(&fresh, libc::EBUSY, b"{}").unwrap_err();
        assert_eq!(error.flag, "--gradescope");
        assert!(error.problem.contains("busy"), "{error}");
        assert_eq!(listing(dir.path()), Vec::<String>::new());
        // Any other failure of the rename leaves the old report as it was.
        let old = dir.path().join("old.json");
        fs::write(&old, "previous report").unwrap();
        let error = write_refused(&old, libc::EIO, b"{}").unwrap_err();
        assert!(error.problem.contains("Input/output error"), "{error}");
        assert_eq!(fs::read_to_string(&old).unwrap(), "previous report");
        assert_eq!(listing(dir.path()), ["old.json"]);
    }

    #[test]
    fn the_temporary_file_never_has_more_permissions_than_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.json");
        fs::write(&secret, "previous").unwrap();
        fs::set_permissions(&secret, Permissions::from_mode(0o600)).unwrap();
        let claim = Destination::claim("--json", &secret).unwrap();
        let Target::Replace { temp, .. } = &claim.target else {
            panic!("{claim:?}");
        };
        assert_eq!(
            fs::metadata(&temp.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        claim.write(b"new").unwrap();
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_dangling_symbolic_link_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("results.json");
        std::os::unix::fs::symlink("missing/results.json", &link).unwrap();
        let error = refused(&link);
        assert!(
            error
                .problem
                .contains("symbolic link to missing/results.json")
                && error.problem.contains("does not exist"),
            "{error}"
        );
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(listing(dir.path()), ["results.json"]);
    }

    #[test]
    fn descriptor_paths_are_recognised() {
        let pid = std::process::id();
        let own = format!("/proc/{pid}/fd/7");
        let cases: [(&str, Option<RawFd>); 9] = [
            ("/dev/stdout", Some(1)),
            ("/dev/stderr", Some(2)),
            ("/dev/fd/1", Some(1)),
            ("/dev/fd/63", Some(63)),
            ("/proc/self/fd/2", Some(2)),
            (&own, Some(7)),
            ("/dev/fd/", None),
            ("/dev/fd/1x", None),
            ("/proc/1/fd/1", None),
        ];
        for (path, fd) in cases {
            assert_eq!(descriptor_named(Path::new(path)), fd, "{path}");
        }
        assert_eq!(descriptor_named(Path::new("dev/stdout")), None);
    }

    #[test]
    fn our_standard_streams_are_written_through_and_our_own_descriptors_refused() {
        let stderr = File::from(io::stderr().as_fd().try_clone_to_owned().unwrap());
        assert!(standard_stream_of(&stderr.metadata().unwrap()).is_some());
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other");
        fs::write(&other, "").unwrap();
        assert_eq!(standard_stream_of(&fs::metadata(&other).unwrap()), None);
        // A descriptor we opened ourselves (close-on-exec) was not handed to us: refused rather
        // than written into.
        let ours = File::open(&other).unwrap();
        let path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ours));
        let error = refused(Path::new(&path));
        assert!(error.problem.contains("not open for writing"), "{error}");
        assert!(refused(Path::new("/dev/fd/987"))
            .problem
            .contains("file descriptor 987"));
        assert_eq!(fs::read(&other).unwrap(), b"");
    }
}
