//! The runner images' build contexts, carried inside the binary: `runner_image/` (the runner
//! image: `Dockerfile`, `launch.py`) and `runner_image/ds/` (the data-science image built on top
//! of it: `Dockerfile`, `safe_exec_plots.py`) as they were when this binary was compiled, the
//! hashes that name them, and the tar archives `docker build -` reads.
//!
//! A hash is the one definition of "this launcher": `safe-exec image build` writes it into the
//! image's `safe-exec.context` label, `safe-exec doctor` compares the label with it, and the tests
//! compare both with it. It covers every file's name, mode and bytes, so it changes whenever the
//! context does; the data-science image's hash also covers the runner's, since it is built on it.
//! A unit test checks that the embedded files are exactly those in `runner_image/` (bar
//! `.dockerignore`, which only matters to a build from the directory).
//!
//! Nothing here talks to docker.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One file of a build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextFile {
    /// Its path inside the context (what the Dockerfile's `COPY` names).
    pub name: &'static str,
    /// Its permission bits in the archive.
    pub mode: u32,
    pub bytes: &'static [u8],
}

/// The runner image's context, sorted by name.
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

/// The data-science image's context (`runner_image/ds/`), sorted by name.
pub const DS_FILES: &[ContextFile] = &[
    ContextFile {
        name: "Dockerfile",
        mode: 0o644,
        bytes: include_bytes!("../../runner_image/ds/Dockerfile"),
    },
    ContextFile {
        name: "safe_exec_plots.py",
        mode: 0o644,
        bytes: include_bytes!("../../runner_image/ds/safe_exec_plots.py"),
    },
];

/// The first line of what is hashed: names the scheme, so a change of scheme changes every hash.
const HASH_SCHEME: &[u8] = b"safe-exec image context 1\n";

/// The hash of [`FILES`]: 64 lowercase hex digits, the value of the runner image's
/// `safe-exec.context` label.
pub fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_of(FILES))
}

/// The hash of [`DS_FILES`] together with the runner's [`hash`] (as a file `.runner-context`):
/// the data-science image's `safe-exec.context` label. A new launcher makes it stale too.
pub fn ds_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut files = DS_FILES.to_vec();
        files.push(ContextFile {
            name: ".runner-context",
            mode: 0o644,
            bytes: hash().as_bytes(),
        });
        hash_of(&files)
    })
}

/// Built from a context this binary carries: `label` is the runner's hash or the
/// data-science image's.
pub fn is_ours(label: &str) -> bool {
    label == hash() || label == ds_hash()
}

/// SHA-256 over the scheme line, then for every file in name order: its name, its mode in octal
/// and its length in decimal, each ended by a NUL byte, and its bytes. Names cannot hold NUL and
/// the length says where each file ends, so two different contexts never hash the same bytes.
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

/// `files` as an uncompressed tar archive for `docker build -`: regular files owned by root,
/// with a fixed time, so the same context always gives the same bytes (and docker's build cache
/// can tell nothing changed).
pub fn tar_of(files: &[ContextFile]) -> std::io::Result<Vec<u8>> {
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

    /// The files of `dir` (not directories), bar what only a build from the directory reads.
    fn files_in(dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| !entry.file_type().unwrap().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".dockerignore")
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_embedded_files_are_exactly_runner_image() {
        for (dir, files) in [(DIR.to_owned(), FILES), (format!("{DIR}/ds"), DS_FILES)] {
            let embedded: Vec<&str> = files.iter().map(|file| file.name).collect();
            assert_eq!(
                files_in(&dir),
                embedded,
                "{dir} and image::context must list the same files (sorted)"
            );
            for file in files {
                let bytes = std::fs::read(format!("{dir}/{}", file.name)).unwrap();
                assert_eq!(
                    bytes, file.bytes,
                    "{dir}/{} differs from the embedded copy",
                    file.name
                );
            }
        }
        // Another directory would be a context this binary does not carry (a `__pycache__` left
        // by a local `py_compile` aside).
        let dirs: Vec<String> = std::fs::read_dir(DIR)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_type().unwrap().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "__pycache__")
            .collect();
        assert_eq!(dirs, ["ds"]);
    }

    #[test]
    fn the_data_science_hash_follows_the_runner_s() {
        assert_ne!(ds_hash(), hash());
        assert_ne!(
            ds_hash(),
            hash_of(DS_FILES),
            "it covers the runner's context too"
        );
        assert!(is_ours(hash()) && is_ours(ds_hash()));
        assert!(!is_ours("") && !is_ours(&hash_of(DS_FILES)));
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
        let bytes = tar_of(FILES).unwrap();
        assert_eq!(
            bytes,
            tar_of(FILES).unwrap(),
            "the archive is deterministic"
        );
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
