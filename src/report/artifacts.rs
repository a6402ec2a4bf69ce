//! Artifacts: the files a program leaves in `out/` beside itself, as they come back from the
//! launcher, and how they are reported (`artifacts` in the JSON report) and named.
//!
//! The launcher sends regular files only, never through a link, capped in count and bytes; it
//! says in its manifest which files it sent whole, which it cut short and which it skipped and
//! why. Here a file counts only when the manifest names it and every byte it promised arrived, and
//! only under a name that is a plain relative path ([`valid_path`]), so no name can point outside
//! a directory it is written into.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One file the program left in `out/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its path under `out/` (`plots/figure-1.png`).
    pub name: String,
    /// What came back (all of it, unless `truncated`).
    pub bytes: Vec<u8>,
    /// Its size in the sandbox.
    pub size: u64,
    /// Cut short by the artifact cap.
    pub truncated: bool,
}

/// A file in `out/` that did not come back, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedArtifact {
    pub name: String,
    pub reason: String,
}

/// Everything that came back from `out/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifacts {
    pub files: Vec<Artifact>,
    pub skipped: Vec<SkippedArtifact>,
    /// More was there than the caps allowed (a file cut short, or files left out).
    pub truncated: bool,
}

/// The launcher's manifest, as it writes it.
#[derive(Debug, Deserialize)]
struct Manifest {
    files: Vec<ManifestFile>,
    skipped: Vec<SkippedArtifact>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    name: String,
    size: u64,
    sent: u64,
    truncated: bool,
}

impl Artifacts {
    /// The artifacts from what was received per name (the bytes kept, which may be none, and how
    /// many arrived) and the launcher's manifest. A file whose bytes did not all arrive, or whose
    /// name is not a plain relative path, is skipped.
    pub fn from_launcher(received: BTreeMap<String, (Vec<u8>, u64)>, manifest: &[u8]) -> Artifacts {
        let Ok(manifest) = serde_json::from_slice::<Manifest>(manifest) else {
            return Artifacts {
                skipped: vec![SkippedArtifact {
                    name: "out".to_owned(),
                    reason: "the launcher's manifest could not be read".to_owned(),
                }],
                ..Artifacts::default()
            };
        };
        let mut received = received;
        let mut artifacts = Artifacts {
            truncated: manifest.truncated,
            skipped: manifest
                .skipped
                .into_iter()
                .map(|skipped| SkippedArtifact {
                    name: crate::sanitize::text(&skipped.name).into_owned(),
                    reason: crate::sanitize::text(&skipped.reason).into_owned(),
                })
                .collect(),
            files: Vec::new(),
        };
        for file in manifest.files {
            let (bytes, arrived) = received.remove(&file.name).unwrap_or_default();
            if !valid_path(&file.name) || arrived != file.sent {
                artifacts.skipped.push(SkippedArtifact {
                    name: crate::sanitize::text(&file.name).into_owned(),
                    reason: "did not arrive whole".to_owned(),
                });
                continue;
            }
            artifacts.files.push(Artifact {
                name: file.name,
                bytes,
                size: file.size,
                truncated: file.truncated,
            });
        }
        artifacts
    }
}

/// A plain relative path: one to [`MAX_DEPTH`] components of `[A-Za-z0-9_.-]`, none empty, none
/// starting with a dot, at most 200 bytes.
pub fn valid_path(name: &str) -> bool {
    let components: Vec<&str> = name.split('/').collect();
    name.len() <= 200
        && (1..=MAX_DEPTH).contains(&components.len())
        && components.iter().all(|component| {
            !component.is_empty()
                && !component.starts_with('.')
                && component
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
        })
}

/// Most path components an artifact name may have (directories nested four deep under `out/`,
/// then the file).
pub const MAX_DEPTH: usize = 5;

/// The media type of an artifact, from its extension.
pub fn media_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

/// The `artifacts` object of the JSON report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactsReport {
    pub files: Vec<ArtifactEntry>,
    pub skipped: Vec<SkippedArtifact>,
    pub truncated: bool,
}

/// One artifact in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Its path under `out/`.
    pub name: String,
    /// Its size in the sandbox, in bytes.
    pub size: u64,
    /// Guessed from its extension.
    pub media_type: String,
    /// Cut short by the artifact cap.
    pub truncated: bool,
    /// Its bytes, base64, when asked for (`run --artifact-content`; always over HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

impl ArtifactsReport {
    pub fn new(artifacts: &Artifacts, with_content: bool) -> ArtifactsReport {
        ArtifactsReport {
            files: artifacts
                .files
                .iter()
                .map(|artifact| ArtifactEntry {
                    name: artifact.name.clone(),
                    size: artifact.size,
                    media_type: media_type(&artifact.name).to_owned(),
                    truncated: artifact.truncated,
                    content_base64: with_content
                        .then(|| base64::engine::general_purpose::STANDARD.encode(&artifact.bytes)),
                })
                .collect(),
            skipped: artifacts.skipped.clone(),
            truncated: artifacts.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_names() {
        for good in [
            "figure.png",
            "plots/a-1.svg",
            "a/b/c/d/e.txt",
            "_x",
            "x.tar.gz",
        ] {
            assert!(valid_path(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            ".hidden",
            "a//b",
            "a/b/c/d/e/f",
            "sp ace",
            "a\\b",
            "é.png",
            "x\n",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn media_types_follow_extensions() {
        assert_eq!(media_type("plot.PNG"), "image/png");
        assert_eq!(media_type("data.csv"), "text/csv");
        assert_eq!(media_type("noext"), "application/octet-stream");
    }

    #[test]
    fn files_count_only_when_named_and_whole() {
        let mut received = BTreeMap::new();
        received.insert("a.txt".to_owned(), (b"hello".to_vec(), 5));
        received.insert("b.bin".to_owned(), (b"xy".to_vec(), 2));
        received.insert("../evil".to_owned(), (b"z".to_vec(), 1));
        // Counted but not kept: listed, with no bytes.
        received.insert("c.png".to_owned(), (Vec::new(), 4));
        let manifest = br#"{"files": [
            {"name": "a.txt", "size": 5, "sent": 5, "truncated": false},
            {"name": "b.bin", "size": 9, "sent": 3, "truncated": true},
            {"name": "../evil", "size": 1, "sent": 1, "truncated": false},
            {"name": "c.png", "size": 4, "sent": 4, "truncated": false}],
          "skipped": [{"name": "link", "reason": "a symbolic link"}], "truncated": true}"#;
        let artifacts = Artifacts::from_launcher(received, manifest);
        assert_eq!(artifacts.files.len(), 2);
        assert_eq!(artifacts.files[0].bytes, b"hello");
        assert_eq!(artifacts.files[1].name, "c.png");
        assert_eq!(artifacts.files[1].size, 4);
        assert!(artifacts.files[1].bytes.is_empty());
        let skipped: Vec<&str> = artifacts.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, ["link", "b.bin", "../evil"]);
        assert!(artifacts.truncated);
        assert_eq!(
            Artifacts::from_launcher(BTreeMap::new(), b"not json").skipped[0].name,
            "out"
        );
    }
}
