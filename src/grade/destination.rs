//! Report files (`--json`, `--junit`, `--gradescope`): claimed before anything runs, written when
//! grading is done, each replaced whole or not at all.
//!
//! Grading can take minutes; a report path that cannot be written must be found before the first
//! container starts, not after the last one. [`Destination::claim`] therefore creates the report's
//! temporary file right away, next to the destination (same directory, so the final rename stays
//! on one file system): that proves the directory exists and lets us create files in it. When
//! grading is done, [`Destination::write`] writes the report into it, flushes it to disk and
//! renames it over the destination. Readers (a CI step, the Gradescope harness) see the previous
//! file or the complete new report, never a half-written one; when writing fails the temporary
//! file is removed and the destination is left as it was. Dropping a claim (an interrupted batch,
//! a malformed suite found later) removes the temporary file; only a hard kill (SIGKILL, or the
//! second Ctrl-C, which exits at once) can leave a `.NAME.*.safe-exec.tmp` behind.
//!
//! A destination that exists and is not a regular file (a terminal, a pipe, `/dev/stdout`, the
//! `/dev/fd/N` of a shell's process substitution) cannot be replaced: it is opened for writing
//! when claimed and written in place. Nor can an existing file we may write in a directory where
//! we may not create files (a harness that prepared the file for us): it is opened when claimed
//! and overwritten in place at the end, which is not atomic but is what writing it means there.
//! A symbolic link to a regular file is followed: the file it points to is replaced and the link
//! stays.
//!
//! This module knows nothing of what a report contains.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// A report that cannot be written where its flag says. Before grading nothing has run; after
/// grading the other reports were written regardless.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot write {flag} {path}: {problem}")]
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
    /// A regular file, new or existing (`path`, symbolic links resolved), replaced by `temp`.
    Replace { temp: TempFile, path: PathBuf },
    /// An existing regular file (`path`, resolved) in a directory where no file can be created:
    /// truncated and written in place.
    Overwrite { file: File, path: PathBuf },
    /// An existing file that is not a regular one, opened for writing.
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
        let target = match fs::metadata(path) {
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
                }
            }
            Err(error) => return Err(problem(describe(&error))),
        };
        Ok(Destination {
            flag,
            path: path.to_path_buf(),
            target,
        })
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
        let problem = |error: io::Error| DestinationError {
            flag: self.flag,
            path: self.path.clone(),
            problem: describe(&error),
        };
        match self.target {
            Target::Replace { mut temp, path } => {
                temp.file.write_all(contents).map_err(problem)?;
                // Some file systems report a full disk or a quota only here (NFS, delayed
                // allocation); a report renamed into place before that would be truncated.
                temp.file.sync_all().map_err(problem)?;
                temp.persist(&path).map_err(problem)
            }
            Target::Overwrite { mut file, .. } => file
                .set_len(0)
                .and_then(|()| file.write_all(contents))
                .and_then(|()| file.sync_all())
                .map_err(problem),
            Target::InPlace(mut file) => file
                .write_all(contents)
                .and_then(|()| file.flush())
                .map_err(problem),
        }
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
    fn next_to(destination: &Path, permissions: Option<Permissions>) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(destination);
        // Short enough that the temporary name stays within NAME_MAX (255 bytes) whatever the
        // destination's name.
        let name: String = destination
            .file_name()
            .map(|name| name.to_string_lossy().chars().take(64).collect())
            .unwrap_or_default();
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
                .mode(0o666)
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

    fn persist(mut self, destination: &Path) -> io::Result<()> {
        fs::rename(&self.path, destination)?;
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
}
