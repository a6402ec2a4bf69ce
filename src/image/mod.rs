//! The runner image, as far as the binary itself is concerned: the build context it carries
//! ([`context`]), building the image from it ([`builder`], `safe-exec image build`), and reading
//! back which context an image was built from (its labels), for `image build` and `doctor`.
//!
//! So a binary installed with `cargo install` or copied to another machine needs nothing beside
//! it to make its image. This module never starts a container.

pub mod builder;
pub mod context;

use std::collections::HashMap;
use std::time::Duration;

use crate::cli::{ImageArgs, ImageBuildArgs, ImageCommand};
use crate::exit_codes;
use crate::runner::{CancelToken, DockerCli, EngineError};
use crate::sandbox::{resolve_image, DEFAULT_IMAGE, DS_IMAGE};
use builder::{BuildRequest, Built, ImageError};

/// Label on the runner image: the [`context::hash`] it was built from.
pub const CONTEXT_LABEL: &str = "safe-exec.context";
/// Label on the runner image: the base image it was built `FROM`.
pub const BASE_LABEL: &str = "safe-exec.base";

const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a runner image says about how it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// Its [`CONTEXT_LABEL`], when it has one.
    pub context: Option<String>,
    /// Its [`BASE_LABEL`], when it has one.
    pub base: Option<String>,
}

impl Labels {
    /// Built from the context whose hash is `hash`.
    pub fn built_from(&self, hash: &str) -> bool {
        self.context.as_deref() == Some(hash)
    }

    /// Built from one of the contexts this binary carries (the runner's or the data-science
    /// image's): [`context::is_ours`].
    pub fn is_ours(&self) -> bool {
        self.context.as_deref().is_some_and(context::is_ours)
    }

    /// Built `FROM` `base`.
    pub fn base_is(&self, base: &str) -> bool {
        self.base.as_deref() == Some(base)
    }

    /// The labels out of `docker image inspect --format '{{json .Config.Labels}}'` (`null` when
    /// the image has none).
    pub fn parse(json: &str) -> Labels {
        let labels: HashMap<String, String> = serde_json::from_str::<Option<_>>(json.trim())
            .ok()
            .flatten()
            .unwrap_or_default();
        Labels {
            context: labels.get(CONTEXT_LABEL).cloned(),
            base: labels.get(BASE_LABEL).cloned(),
        }
    }
}

/// The labels of `image`, or `None` when there is no such image.
pub fn labels(docker: &DockerCli, image: &str) -> Result<Option<Labels>, EngineError> {
    let args = [
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]
    .map(String::from);
    match docker.call(&args, INSPECT_TIMEOUT, Some(image)) {
        Ok(output) => Ok(Some(Labels::parse(&output.stdout))),
        Err(EngineError::ImageMissing { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The command that builds `image`, for messages: `--tag` only when it is not the default.
pub fn build_command(image: &str) -> String {
    if image == DEFAULT_IMAGE {
        "safe-exec image build".to_owned()
    } else if image == DS_IMAGE {
        "safe-exec image build --ds".to_owned()
    } else {
        format!(
            "safe-exec image build --tag {}",
            crate::sanitize::text(image)
        )
    }
}

/// `safe-exec image ...`.
pub fn execute(args: ImageArgs) -> anyhow::Result<u8> {
    match args.command {
        ImageCommand::Build(args) => execute_build(args),
    }
}

fn execute_build(args: ImageBuildArgs) -> anyhow::Result<u8> {
    // `--tag` takes the short names `--image` does: `ds` (as from SAFE_EXEC_IMAGE=ds) asks for
    // the data-science image, on the default runner image.
    let named = args
        .tag
        .filter(|tag| !tag.is_empty())
        .map(|tag| resolve_image(&tag).to_owned());
    let (tag, ds_tag) = match named {
        Some(tag) if tag == DS_IMAGE => (DEFAULT_IMAGE.to_owned(), Some(tag)),
        tag => (
            tag.unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
            args.ds.then(|| {
                args.ds_tag
                    .filter(|tag| !tag.is_empty())
                    .unwrap_or_else(|| DS_IMAGE.to_owned())
            }),
        ),
    };
    let request = BuildRequest {
        tag,
        base: args.base.filter(|base| !base.is_empty()),
        offline: args.offline,
        offline_base: args
            .offline_base
            .filter(|base| !base.is_empty())
            .unwrap_or_else(|| builder::OFFLINE_BASE.to_owned()),
        pull_timeout: args.pull_timeout.unwrap_or(builder::DEFAULT_PULL_TIMEOUT),
    };
    let cancel = CancelToken::new();
    let on_first = cancel.clone();
    crate::signals::on_stop_signals(
        move |signal| on_first.cancel_by_signal(signal),
        |signal| std::process::exit(i32::from(exit_codes::for_signal(signal))),
    )?;
    let docker = DockerCli::from_env();
    let mut progress = |line: &str| eprintln!("safe-exec: {line}");
    let built = builder::build(&docker, &request, &mut progress, &cancel);
    let mut code = finish(
        "runner image",
        &request.tag,
        context::hash(),
        built,
        &cancel,
    );
    if let (exit_codes::SUCCESS, Some(ds_tag)) = (code, ds_tag) {
        let built = builder::build_ds(&docker, &ds_tag, &request.tag, &mut progress, &cancel);
        code = finish(
            "data-science image",
            &ds_tag,
            context::ds_hash(),
            built,
            &cancel,
        );
    }
    Ok(code)
}

/// Say how building `what` `tag` went; the exit code.
fn finish(
    what: &str,
    tag: &str,
    hash: &str,
    built: Result<Built, ImageError>,
    cancel: &CancelToken,
) -> u8 {
    let tag = crate::sanitize::text(tag);
    let hash = &hash[..12];
    match built {
        Ok(Built::UpToDate { base }) => {
            let base = crate::sanitize::text(base.as_deref().unwrap_or("unknown")).into_owned();
            eprintln!("safe-exec: {what} {tag} is up to date (context {hash}, base {base})");
            exit_codes::SUCCESS
        }
        Ok(Built::Built { base, size_bytes }) => {
            let size = size_bytes.map_or(String::new(), |bytes| {
                format!(", {} MB", (bytes + 500_000) / 1_000_000)
            });
            eprintln!(
                "safe-exec: {what} {tag} built from {} (context {hash}{size})",
                crate::sanitize::text(&base)
            );
            exit_codes::SUCCESS
        }
        Err(ImageError::Interrupted) => {
            eprintln!("safe-exec: interrupted: the {what} {tag} was not built");
            cancel
                .signal()
                .map_or(exit_codes::INTERRUPTED, exit_codes::for_signal)
        }
        Err(error) => {
            eprintln!("safe-exec: {error}");
            exit_codes::SANDBOX_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_from_docker_s_json() {
        let json = format!(
            "{{\"{CONTEXT_LABEL}\":\"{}\",\"{BASE_LABEL}\":\"safe-exec-base:bookworm\",\"other\":\"x\"}}\n",
            context::hash()
        );
        let labels = Labels::parse(&json);
        assert!(labels.built_from(context::hash()) && labels.is_ours());
        assert!(labels.base_is("safe-exec-base:bookworm"));
        assert_eq!(labels.base.as_deref(), Some("safe-exec-base:bookworm"));
        for none in ["null\n", "{}", "", "not json"] {
            let labels = Labels::parse(none);
            assert_eq!(labels, Labels::default());
            assert!(!labels.is_ours());
        }
        let other = Labels::parse(&format!("{{\"{CONTEXT_LABEL}\":\"0123\"}}"));
        assert!(!other.is_ours());
        let ds = Labels::parse(&format!(
            "{{\"{CONTEXT_LABEL}\":\"{}\"}}",
            context::ds_hash()
        ));
        assert!(ds.is_ours() && !ds.built_from(context::hash()));
    }

    #[test]
    fn the_build_command_names_a_tag_only_when_needed() {
        assert_eq!(build_command(DEFAULT_IMAGE), "safe-exec image build");
        assert_eq!(
            build_command("mine:1"),
            "safe-exec image build --tag mine:1"
        );
    }
}
