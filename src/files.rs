//! Opening the files safe-exec is given — `grade`'s submissions and suites, `run --file` inputs —
//! only as regular files, never through a symbolic link, never a FIFO or a device.
//!
//! A submission is often a file its author controls the nature of (a student's repository): as a
//! symbolic link to a secret `.ans` or to `/etc/passwd` it would be "compiled", and the compile
//! error would quote its first line in every report; as a FIFO it would hang the grader; as a
//! device it would be read forever or have side effects when opened. So:
//!
//! - [`open_regular`] (a path from the command line): the last component is never followed
//!   (`lstat` first, then `open` with `O_NOFOLLOW`), anything but a regular file is refused
//!   before it is opened, and the opened file is checked again (`fstat`), so a swap in between
//!   cannot slip through. `O_NONBLOCK` and `O_NOCTTY` make even that open harmless. The
//!   directories leading to the file are the caller's, as given.
//! - [`SuiteDir`] (a suite): the suite directory is opened once, and every file in it is opened
//!   relative to that descriptor one component at a time with `O_NOFOLLOW`, so no link is
//!   followed anywhere below the suite's own path, whenever it was planted.
//!
//! - [`OutputDir`] (`run --artifacts DIR`): files are created below the directory the same way,
//!   never through a link, never writing through an existing file.
//!
//! [`FileId`] names a file by device and inode, so a hard link to a suite file can be recognised
//! as one. This module opens files; it never reads them and never decides what a refusal means
//! to the user (the callers word that).

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::source::describe_io;

/// What kind of file a path names, without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl FileKind {
    /// The kind of `file_type` (from `lstat`/`fstat`, or a directory entry).
    pub fn of(file_type: fs::FileType) -> FileKind {
        if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else if file_type.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Regular
        }
    }

    fn of_mode(mode: libc::mode_t) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::Regular,
        }
    }

    /// `a symbolic link`, `a FIFO (named pipe)`, ... for messages.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
        }
    }
}

/// Why a file was not opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// It exists but is not a regular file (or, for [`SuiteDir::open`], not a directory).
    #[error("it is {}", .0.describe())]
    Kind(FileKind),
    /// A directory on the way below the suite is not a directory (or is a link).
    #[error("{} is {}", .0.display(), .1.describe())]
    Component(PathBuf, FileKind),
    #[error("{}", describe_io(.0))]
    Io(#[from] io::Error),
}

impl OpenError {
    /// Is this "no such file"?
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io(error) if error.kind() == io::ErrorKind::NotFound)
    }
}

/// A file's identity: device and inode. Two paths with the same id are the same file (a hard
/// link, or the same path spelled twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(metadata: &fs::Metadata) -> FileId {
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// Flags for opening a file to read: no link in the last component, no blocking on a FIFO, no
/// controlling terminal (std adds `O_CLOEXEC`).
const READ_FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;

/// Open `path` (as given by the user) to read, if it is a regular file and its last component is
/// not a link; see the module docs.
pub fn open_regular(path: &Path) -> Result<(File, FileId), OpenError> {
    let kind = FileKind::of(fs::symlink_metadata(path)?.file_type());
    if kind != FileKind::Regular {
        return Err(OpenError::Kind(kind));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(READ_FLAGS)
        .open(path)
        .map_err(|error| refused_link(error, FileKind::Symlink))?;
    let id = check_regular(&file)?;
    Ok((file, id))
}

/// The opened file's id, if it is a regular file (checked on the descriptor itself).
fn check_regular(file: &File) -> Result<FileId, OpenError> {
    let metadata = file.metadata()?;
    match FileKind::of(metadata.file_type()) {
        FileKind::Regular => Ok(FileId::of(&metadata)),
        kind => Err(OpenError::Kind(kind)),
    }
}

/// `O_NOFOLLOW` refuses a link with `ELOOP`: say what it is.
fn refused_link(error: io::Error, kind: FileKind) -> OpenError {
    if error.raw_os_error() == Some(libc::ELOOP) {
        OpenError::Kind(kind)
    } else {
        OpenError::Io(error)
    }
}

/// A suite directory, held open: every file in it is opened through this descriptor, one
/// component at a time, never following a link. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SuiteDir {
    root: PathBuf,
    fd: Arc<OwnedFd>,
}

impl SuiteDir {
    /// Open the suite directory `root`; its last component must be a directory, not a link to
    /// one.
    pub fn open(root: &Path) -> Result<SuiteDir, OpenError> {
        let kind = FileKind::of(fs::symlink_metadata(root)?.file_type());
        if kind != FileKind::Directory {
            return Err(OpenError::Kind(kind));
        }
        Ok(SuiteDir {
            root: root.to_path_buf(),
            fd: Arc::new(open_dir(root)?),
        })
    }

    /// The suite's path as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `relative` under the suite's path, for messages and listings.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }

    /// Open the regular file `relative` (a path of plain names below the suite) to read.
    pub fn open_file(&self, relative: &Path) -> Result<(File, FileId), OpenError> {
        let names: Vec<&Path> = relative
            .components()
            .map(|component| match component {
                Component::Normal(name) => Ok(Path::new(name)),
                _ => Err(OpenError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain path below the suite",
                ))),
            })
            .collect::<Result<_, _>>()?;
        let Some((file_name, dirs)) = names.split_last() else {
            return Err(OpenError::Kind(FileKind::Directory));
        };
        let parent = walk_dirs(&self.fd, &self.root, dirs, false)?;
        let at = parent.as_ref().unwrap_or(&self.fd).as_raw_fd();
        // Look before opening: a device or FIFO is refused without being opened at all.
        let kind = kind_at(at, file_name)?;
        if kind != FileKind::Regular {
            return Err(OpenError::Kind(kind));
        }
        let file = File::from(open_at(
            at,
            file_name,
            libc::O_RDONLY | READ_FLAGS | libc::O_CLOEXEC,
        )?);
        let id = check_regular(&file)?;
        Ok((file, id))
    }
}

/// A directory that receives files (`run --artifacts DIR`), held open: every file is created
/// through this descriptor, one component at a time, never following a link and never writing
/// through one (an existing file is removed and created anew, so not even a hard link planted
/// there is written through).
#[derive(Debug)]
pub struct OutputDir {
    root: PathBuf,
    fd: OwnedFd,
}

impl OutputDir {
    /// Create `root` if it is missing (with its parents) and open it; it must be a directory,
    /// not a link to one.
    pub fn create(root: &Path) -> Result<OutputDir, OpenError> {
        match fs::symlink_metadata(root) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir_all(root)?,
            Err(error) => return Err(OpenError::Io(error)),
            Ok(metadata) => {
                let kind = FileKind::of(metadata.file_type());
                if kind != FileKind::Directory {
                    return Err(OpenError::Kind(kind));
                }
            }
        }
        Ok(OutputDir {
            root: root.to_path_buf(),
            fd: open_dir(root)?,
        })
    }

    /// `relative` under the directory's path, for messages.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Write `bytes` to `relative` (plain names separated by `/`), making the directories on the
    /// way. A link anywhere on the way, or where the file goes, is refused.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), OpenError> {
        let names: Vec<&Path> = relative.split('/').map(Path::new).collect();
        let Some((file_name, dirs)) = names.split_last() else {
            return Err(OpenError::Kind(FileKind::Directory));
        };
        let parent = walk_dirs(&self.fd, &self.root, dirs, true)?;
        let at = parent.as_ref().unwrap_or(&self.fd).as_raw_fd();
        match kind_at(at, file_name) {
            Ok(FileKind::Regular) => {
                let name = c_name(file_name)?;
                // SAFETY: `name` is a valid C string that outlives the call; `at` is an open
                // descriptor borrowed for the call.
                if unsafe { libc::unlinkat(at, name.as_ptr(), 0) } != 0 {
                    return Err(OpenError::Io(io::Error::last_os_error()));
                }
            }
            Ok(kind) => return Err(OpenError::Kind(kind)),
            Err(OpenError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let name = c_name(file_name)?;
        // SAFETY: as for unlinkat above; the mode applies to the file O_CREAT makes.
        let fd = unsafe {
            libc::openat(
                at,
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(refused_link(io::Error::last_os_error(), FileKind::Symlink));
        }
        // SAFETY: openat(2) succeeded, so `fd` is a new descriptor that nothing else owns.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        std::io::Write::write_all(&mut file, bytes)?;
        Ok(())
    }
}

/// Open the directory `root` (its last component not followed).
fn open_dir(root: &Path) -> Result<OwnedFd, OpenError> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(|error| refused_link(error, FileKind::Symlink))?;
    Ok(OwnedFd::from(dir))
}

/// Walk the directories `dirs` below `root` (open as `root_fd`), one component at a time,
/// never following a link; with `create`, missing ones are made. Returns the last directory
/// opened (`None` when `dirs` is empty: the root itself).
fn walk_dirs(
    root_fd: &OwnedFd,
    root: &Path,
    dirs: &[&Path],
    create: bool,
) -> Result<Option<OwnedFd>, OpenError> {
    let mut walked = PathBuf::new();
    let mut parent: Option<OwnedFd> = None;
    for dir in dirs {
        walked.push(dir);
        let at = parent.as_ref().unwrap_or(root_fd).as_raw_fd();
        match kind_at(at, dir) {
            Ok(FileKind::Directory) => {}
            Ok(kind) => return Err(OpenError::Component(root.join(&walked), kind)),
            Err(OpenError::Io(error)) if create && error.kind() == io::ErrorKind::NotFound => {
                let name = c_name(dir)?;
                // SAFETY: `name` is a valid C string that outlives the call; `at` is an open
                // descriptor borrowed for the call.
                if unsafe { libc::mkdirat(at, name.as_ptr(), 0o755) } != 0 {
                    return Err(OpenError::Io(io::Error::last_os_error()));
                }
            }
            Err(error) => return Err(error),
        }
        parent = Some(open_at(
            at,
            dir,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )?);
    }
    Ok(parent)
}

fn c_name(name: &Path) -> Result<CString, OpenError> {
    CString::new(name.as_os_str().as_bytes()).map_err(|_| {
        OpenError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file name holds a NUL byte",
        ))
    })
}

/// The kind of `name` in the directory `dir`, without following a link.
fn kind_at(dir: libc::c_int, name: &Path) -> Result<FileKind, OpenError> {
    let name = c_name(name)?;
    // SAFETY: `stat` is plain data that fstatat(2) fills in; `name` is a valid C string that
    // outlives the call; `dir` is an open descriptor borrowed for the call.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::fstatat(dir, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
    if done != 0 {
        return Err(OpenError::Io(io::Error::last_os_error()));
    }
    Ok(FileKind::of_mode(stat.st_mode))
}

/// openat(2) of `name` in `dir` with `flags`; a link refused by `O_NOFOLLOW` is reported as one.
fn open_at(dir: libc::c_int, name: &Path, flags: libc::c_int) -> Result<OwnedFd, OpenError> {
    let name = c_name(name)?;
    // SAFETY: `name` is a valid C string that outlives the call; `dir` is an open descriptor
    // borrowed for the call; the mode argument is ignored without O_CREAT.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return Err(refused_link(error, FileKind::Symlink));
    }
    // SAFETY: openat(2) succeeded, so `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn read(file: File) -> String {
        let mut text = String::new();
        let mut file = file;
        file.read_to_string(&mut text).unwrap();
        text
    }

    fn mkfifo(path: &Path) {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    #[test]
    fn an_output_dir_never_writes_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("artifacts");
        let out = OutputDir::create(&root).unwrap();
        out.write("plots/a.png", b"png").unwrap();
        assert_eq!(fs::read(root.join("plots/a.png")).unwrap(), b"png");
        // Written again: replaced.
        out.write("plots/a.png", b"new").unwrap();
        assert_eq!(fs::read(root.join("plots/a.png")).unwrap(), b"new");
        // A link to another directory on the way, a link where the file goes, a hard link there.
        symlink(outside.path(), root.join("etc")).unwrap();
        assert!(matches!(
            out.write("etc/passwd", b"x"),
            Err(OpenError::Component(_, FileKind::Symlink))
        ));
        let target = outside.path().join("target");
        fs::write(&target, "keep").unwrap();
        symlink(&target, root.join("link.txt")).unwrap();
        assert!(matches!(
            out.write("link.txt", b"x"),
            Err(OpenError::Kind(FileKind::Symlink))
        ));
        fs::hard_link(&target, root.join("hard.txt")).unwrap();
        out.write("hard.txt", b"x").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(fs::read_dir(outside.path()).unwrap().count() == 1);
        // The directory itself may not be a link.
        let link_root = dir.path().join("link-root");
        symlink(outside.path(), &link_root).unwrap();
        assert!(matches!(
            OutputDir::create(&link_root),
            Err(OpenError::Kind(FileKind::Symlink))
        ));
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.py");
        fs::write(&file, "print(1)\n").unwrap();
        let (opened, id) = open_regular(&file).unwrap();
        assert_eq!(read(opened), "print(1)\n");
        assert_eq!(id, FileId::of(&fs::metadata(&file).unwrap()));

        let link = dir.path().join("link.py");
        symlink(&file, &link).unwrap();
        let fifo = dir.path().join("fifo.py");
        mkfifo(&fifo);
        for (path, kind) in [
            (link.as_path(), FileKind::Symlink),
            (fifo.as_path(), FileKind::Fifo),
            (Path::new("/dev/null"), FileKind::CharDevice),
            (dir.path(), FileKind::Directory),
        ] {
            let error = open_regular(path).unwrap_err();
            assert!(
                matches!(error, OpenError::Kind(found) if found == kind),
                "{}: {error:?}",
                path.display()
            );
        }
        let missing = open_regular(&dir.path().join("missing.py")).unwrap_err();
        assert!(missing.is_not_found());
        assert_eq!(missing.to_string(), "no such file");
        assert_eq!(
            OpenError::Kind(FileKind::Fifo).to_string(),
            "it is a FIFO (named pipe)"
        );
    }

    #[test]
    fn a_hard_link_has_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("1.ans");
        fs::write(&file, "42\n").unwrap();
        let link = dir.path().join("sub.py");
        fs::hard_link(&file, &link).unwrap();
        assert_eq!(
            open_regular(&link).unwrap().1,
            open_regular(&file).unwrap().1
        );
    }

    #[test]
    fn suite_files_are_opened_without_following_any_link() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "outside\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("data/secret/g")).unwrap();
        fs::write(root.path().join("data/secret/g/1.in"), "1\n").unwrap();
        symlink(outside.path(), root.path().join("data/linked")).unwrap();
        symlink(
            outside.path().join("secret"),
            root.path().join("data/secret/1.ans"),
        )
        .unwrap();
        mkfifo(&root.path().join("data/secret/2.in"));

        let suite = SuiteDir::open(root.path()).unwrap();
        let (file, _) = suite.open_file(Path::new("data/secret/g/1.in")).unwrap();
        assert_eq!(read(file), "1\n");
        let link = suite.open_file(Path::new("data/secret/1.ans")).unwrap_err();
        assert!(
            matches!(link, OpenError::Kind(FileKind::Symlink)),
            "{link:?}"
        );
        let through = suite
            .open_file(Path::new("data/linked/secret"))
            .unwrap_err();
        assert!(
            matches!(&through, OpenError::Component(path, FileKind::Symlink) if path.ends_with("data/linked")),
            "{through:?}"
        );
        let fifo = suite.open_file(Path::new("data/secret/2.in")).unwrap_err();
        assert!(matches!(fifo, OpenError::Kind(FileKind::Fifo)), "{fifo:?}");
        assert!(suite.open_file(Path::new("../x")).is_err());
        assert!(suite
            .open_file(Path::new("data/secret/none.in"))
            .unwrap_err()
            .is_not_found());

        // The suite's own path may not be a link either.
        let links = tempfile::tempdir().unwrap();
        let linked_root = links.path().join("suite");
        symlink(root.path(), &linked_root).unwrap();
        let error = SuiteDir::open(&linked_root).unwrap_err();
        assert!(
            matches!(error, OpenError::Kind(FileKind::Symlink)),
            "{error:?}"
        );
    }
}
