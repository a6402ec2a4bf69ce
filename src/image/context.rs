//! The runner image's build context, carried inside the binary: `runner_image/Dockerfile` and
//! `runner_image/launch.py` as they were when this binary was compiled, the hash that names that
//! context, and the tar archive `docker build -` reads.
//!
//! The hash is the one definition of "this launcher": `safe-exec image build` writes it into the
//! image's `safe-exec.context` label, `safe-exec doctor` compares the label with it, and the tests
//! compare both with it. It covers every file's name, mode and bytes, so it changes whenever the
//! context does; a unit test checks that the embedded files are exactly those in `runner_image/`
//! (bar `.dockerignore`, which only matters to a build from the directory).
//!
//! Nothing here talks to docker.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One file of the build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextFile {
    /// Its path inside the context (what the Dockerfile's `COPY` names).
    pub name: &'static str,
    /// Its permission bits in the archive.
    pub mode: u32,
    pub bytes: &'static [u8],
}

/// The context this binary builds its runner image from, sorted by name.
pub const FILES: &[ContextFile] = &[
    ContextFile {
        name: "Dockerfile",
        mode: 0o644,
        bytes: include_bytes!("../../runner_image/Dockerfile"),
    },
    ContextFile {
        name: "launch.py",
        mode: 0o644,
        bytes: include_bytes!("../../runner_image/launch.py"),
    },
];

/// The first line of what is hashed: names the scheme, so a change of scheme changes every hash.
const HASH_SCHEME: &[u8] = b"safe-exec image context 1\n";

/// The hash of [`FILES`]: 64 lowercase hex digits, the value of the image's `safe-exec.context`
/// label.
pub fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_of(FILES))
}

/// SHA-256 over the scheme line, then for every file in name order: its name, its mode in octal
/// and its length in decimal, each ended by a NUL byte, and its bytes. Names cannot hold NUL and
/// the length ends each file, so two different contexts never hash the same bytes.
pub fn hash_of(files: &[ContextFile]) -> String {
    let mut sorted: Vec<&ContextFile> = files.iter().collect();
    sorted.sort_by_key(|file| file.name);
    let mut hasher = Sha256::new();
    hasher.update(HASH_SCHEME);
    for file in sorted {
        hasher.update(file.name.as_bytes());
        hasher.update(b"\0");
        hasher.update(format!("{:o}", file.mode).as_bytes());
        hasher.update(b"\0");
        hasher.update(file.bytes.len().to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(file.bytes);
    }
    hex::encode(hasher.finalize())
}

/// [`FILES`] as an uncompressed tar archive for `docker build -`: regular files owned by root,
/// with a fixed time, so the same context always gives the same bytes (and docker's build cache
/// can tell nothing changed).
pub fn tar() -> std::io::Result<Vec<u8>> {
    tar_of(FILES)
}

fn tar_of(files: &[ContextFile]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(file.name)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(file.bytes.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        archive.append(&header, file.bytes)?;
    }
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/runner_image");

    #[test]
    fn the_embedded_files_are_exactly_runner_image() {
        let mut on_disk: Vec<String> = std::fs::read_dir(DIR)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            // `.dockerignore` only matters to a build from the directory; `__pycache__` is what a
            // local `python3 -m py_compile` leaves behind, ignored by it.
            .filter(|name| name != ".dockerignore" && name != "__pycache__")
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|file| file.name).collect();
        assert_eq!(
            on_disk, embedded,
            "runner_image/ and image::context::FILES must list the same files (sorted)"
        );
        for file in FILES {
            let bytes = std::fs::read(format!("{DIR}/{}", file.name)).unwrap();
            assert_eq!(
                bytes, file.bytes,
                "{} differs from the embedded copy",
                file.name
            );
        }
    }

    #[test]
    fn the_hash_is_stable_and_hex() {
        let first = hash();
        assert_eq!(first.len(), 64);
        assert!(first
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(first, hash_of(FILES));
        // Pinned on a fixed input: the scheme itself must not change by accident (every image
        // built before would count as stale).
        let fixed = [ContextFile {
            name: "a",
            mode: 0o644,
            bytes: b"x",
        }];
        assert_eq!(
            hash_of(&fixed),
            hex::encode(Sha256::digest(
                b"safe-exec image context 1\na\x00644\x001\x00x"
            ))
        );
    }

    #[test]
    fn the_hash_changes_with_any_name_mode_or_byte_and_not_with_order() {
        let base = [
            ContextFile {
                name: "Dockerfile",
                mode: 0o644,
                bytes: b"FROM x\n",
            },
            ContextFile {
                name: "launch.py",
                mode: 0o644,
                bytes: b"print(1)\n",
            },
        ];
        let reference = hash_of(&base);
        let reversed = [base[1], base[0]];
        assert_eq!(hash_of(&reversed), reference);
        let variants = [
            [
                base[0],
                ContextFile {
                    bytes: b"print(2)\n",
                    ..base[1]
                },
            ],
            [
                base[0],
                ContextFile {
                    name: "launch2.py",
                    ..base[1]
                },
            ],
            [
                base[0],
                ContextFile {
                    mode: 0o755,
                    ..base[1]
                },
            ],
            // Bytes moved across the boundary between two files.
            [
                ContextFile {
                    bytes: b"FROM x\nprint(1)\n",
                    ..base[0]
                },
                ContextFile {
                    bytes: b"",
                    ..base[1]
                },
            ],
        ];
        for variant in variants {
            assert_ne!(hash_of(&variant), reference, "{variant:?}");
        }
        assert_ne!(hash_of(&base[..1]), reference);
    }

    #[test]
    fn the_tar_holds_the_files_as_root_owned_regular_files() {
        let bytes = tar().unwrap();
        assert_eq!(bytes, tar().unwrap(), "the archive is deterministic");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let file = FILES
                .iter()
                .find(|file| file.name == name)
                .expect("a context file");
            assert_eq!(content, file.bytes, "{name}");
            assert_eq!(header.entry_type(), tar::EntryType::Regular);
            assert_eq!(header.mode().unwrap(), 0o644);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            seen.push(name);
        }
        assert_eq!(seen, ["Dockerfile", "launch.py"]);
    }
}
