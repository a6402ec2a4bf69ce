//! The `run_python` tool, as data: its definition (name, description, the JSON Schemas of its
//! arguments and result), the checking of a call's arguments into a [`Job`], and the turning of
//! an [`Outcome`] into the tool's result. Pure: nothing here runs, waits or prints, so every rule
//! is unit-tested below.
//!
//! # Arguments
//!
//! `code` (required), `stdin`, `files` (each `name`, `content`, `encoding` `text` or `base64`) and
//! `timeout_secs`, which may only lower the server's time limit. Anything else the server fixes
//! when it starts. Arguments that do not fit are refused as a whole with an [`ArgumentError`]
//! (a JSON-RPC "invalid params" error, see [`super::server`]); nothing runs.
//!
//! # Result
//!
//! [`RunResult`] as the structured content, and the same JSON as the first (text) content item;
//! then each image the program left in `out/` as an image item, and other files within
//! [`MAX_INLINE_FILE_BYTES`] as embedded resources. `isError` is true exactly when `status` is not
//! `ok`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ResourceContents, Tool, ToolAnnotations,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{human_bytes, human_secs, LimitOverrides, Limits};
use crate::report::artifacts::media_type;
use crate::report::{encode_output, Encoding, Outcome, Status};
use crate::runner::job::{
    InputFile, InputFiles, InputFilesError, MAX_INPUT_BYTES, MAX_INPUT_FILES,
};
use crate::runner::{Job, ProgramStdin};
use crate::source::{Program, RejectReason};

/// The tool's name.
pub const TOOL_NAME: &str = "run_python";
/// Most bytes of `stdin` a call may give.
pub const MAX_STDIN_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes of files other than images returned inline (as embedded resources), all together;
/// files past it are only listed. Images come back whole, within the artifact cap.
pub const MAX_INLINE_FILE_BYTES: u64 = 1024 * 1024;
/// The media types returned as MCP image content: the ones model providers take as images.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The arguments of `run_python`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPythonArgs {
    /// The Python 3 program to run, as source text. It runs as `main.py` in its own working
    /// directory, with `__name__ == "__main__"`.
    pub code: String,
    /// Text the program reads on its standard input (default: none; its first read gets
    /// end-of-file).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Files placed beside the program, read-only to it (at most 32 files and 8 MiB in all).
    #[serde(default)]
    pub files: Vec<FileArg>,
    /// A lower CPU time limit for this run, in seconds; at most the server's own (`maximum`).
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

/// One file placed beside the program.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileArg {
    /// Its name in the program's working directory: letters, digits, `_`, `.` and `-`, at most
    /// 100 characters, not starting with `.` or `-`, not `out` or `main.py`.
    pub name: String,
    /// Its contents: the text itself, or the bytes in standard base64 with `encoding: "base64"`.
    pub content: String,
    /// How `content` is given (default `text`).
    #[serde(default)]
    pub encoding: FileEncoding,
}

/// How a file's `content` is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// The text itself, stored as UTF-8.
    #[default]
    Text,
    /// The bytes in standard base64 (with padding).
    Base64,
}

/// Why a call's arguments are refused. Nothing ran.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgumentError {
    /// The arguments do not fit the tool's input schema (a missing `code`, a wrong type, an
    /// unknown field). `detail` is serde's message.
    #[error("the arguments of {TOOL_NAME} do not fit its inputSchema: {detail}")]
    Shape { detail: String },
    #[error("`code`: {0}")]
    Code(String),
    #[error("`stdin` is {size} bytes: at most {} are taken", human_bytes(MAX_STDIN_BYTES as u64))]
    StdinTooLarge { size: usize },
    #[error("`files`: {count} files given, at most {MAX_INPUT_FILES} are taken")]
    TooManyFiles { count: usize },
    /// `name` is already safe to print.
    #[error("`files`: `{name}`: {reason}")]
    File { name: String, reason: String },
    /// [`InputFile::new`]'s reason, which names the file.
    #[error("`files`: {0}")]
    FileName(String),
    #[error(
        "`files`: the files come to more than {} in all: give less",
        human_bytes(MAX_INPUT_BYTES)
    )]
    FilesTooLarge,
    #[error("`timeout_secs`: {0}")]
    Timeout(String),
}

/// The tool's definition for `tools/list`, describing the server's `limits` and image.
pub fn definition(limits: &Limits, data_science: bool) -> Tool {
    let description = format!(
        "Run a Python 3.11 program in a fresh, locked-down sandbox (no network, read-only \
         filesystem apart from its working directory, one new container per call: nothing \
         persists between calls) and return its stdout, stderr, status, exit code, CPU and wall \
         time, and the files it writes into `out/` in its working directory. Images there (PNG, \
         JPEG, GIF, WebP) come back as images; other files are listed, and within 1 MiB in all \
         their contents come back too.{} Input files go in with `files`. Limits: {} of CPU time \
         ({} wall-clock), {} of memory, {} of output per stream, {} characters of code; \
         `timeout_secs` may lower the time limit. `status` is ok, runtime_error, timeout, \
         memory_limit, output_limit, rejected, sandbox_error or interrupted; isError is true \
         unless it is ok.",
        if data_science {
            " numpy, pandas, matplotlib and scipy are installed; plt.show() saves each open \
             figure into out/, so a plot comes back as an image."
        } else {
            " Only the standard library is installed."
        },
        human_secs(limits.timeout),
        human_secs(limits.wall_timeout),
        human_bytes(limits.memory_bytes),
        human_bytes(limits.max_output_bytes),
        limits.max_code_chars,
    );
    Tool::new(TOOL_NAME, description, input_schema(limits))
        .with_title("Run Python in a sandbox")
        .with_raw_output_schema(rmcp::handler::server::tool::schema_for_output::<RunResult>())
        .with_annotations(
            // Each run happens in a container that is thrown away, with no network: nothing
            // outside it changes.
            ToolAnnotations::new().read_only(true).open_world(false),
        )
}

/// The arguments' schema, with this server's time limit as `timeout_secs`'s maximum.
fn input_schema(limits: &Limits) -> Arc<JsonObject> {
    let mut schema = rmcp::handler::server::tool::schema_for_input::<RunPythonArgs>()
        .map(|schema| schema.as_ref().clone())
        // The type above is an object by construction; an empty schema would still be valid.
        .unwrap_or_default();
    if let Some(timeout) = schema
        .get_mut("properties")
        .and_then(|properties| properties.get_mut("timeout_secs"))
        .and_then(|timeout| timeout.as_object_mut())
    {
        timeout.insert("exclusiveMinimum".to_owned(), 0.into());
        timeout.insert("maximum".to_owned(), limits.timeout.as_secs_f64().into());
    }
    Arc::new(schema)
}

/// The arguments of one call, from the JSON object the client sent (none: no arguments).
pub fn parse(arguments: Option<JsonObject>) -> Result<RunPythonArgs, ArgumentError> {
    serde_json::from_value(serde_json::Value::Object(arguments.unwrap_or_default())).map_err(
        |error| ArgumentError::Shape {
            detail: crate::sanitize::text(&error.to_string()).into_owned(),
        },
    )
}

/// The job for `args` under the server's `limits`, or why the arguments are refused.
pub fn job(args: RunPythonArgs, limits: &Limits) -> Result<Job, ArgumentError> {
    let limits = call_limits(limits, args.timeout_secs)?;
    let program = Program::from_text(&args.code, limits.max_code_chars).map_err(|reason| {
        ArgumentError::Code(match reason {
            // The CLI's message names a flag the caller cannot use.
            RejectReason::TooLong { chars, limit } => format!(
                "the code is {chars} characters long; this server takes at most {limit} \
                 (its --max-code-chars): shorten it"
            ),
            other => other.to_string(),
        })
    })?;
    let stdin = match args.stdin {
        None => ProgramStdin::Empty,
        Some(text) if text.len() > MAX_STDIN_BYTES => {
            return Err(ArgumentError::StdinTooLarge { size: text.len() })
        }
        Some(text) => ProgramStdin::Bytes(text.into_bytes()),
    };
    let files = input_files(args.files, program.filename())?;
    Ok(Job {
        program,
        files,
        stdin,
        limits,
    })
}

/// The server's limits, with the time limit lowered to `timeout_secs` when asked. Asking for the
/// server's own limit changes nothing (so the run can take a warm container).
fn call_limits(server: &Limits, timeout_secs: Option<f64>) -> Result<Limits, ArgumentError> {
    let Some(secs) = timeout_secs else {
        return Ok(*server);
    };
    let timeout = crate::limits::check_timeout_secs(secs).map_err(ArgumentError::Timeout)?;
    if timeout > server.timeout {
        return Err(ArgumentError::Timeout(format!(
            "{secs} s is above this server's time limit of {}: ask for at most {} (the server's \
             --timeout sets it)",
            human_secs(server.timeout),
            server.timeout.as_secs_f64()
        )));
    }
    if timeout == server.timeout {
        return Ok(*server);
    }
    let lowered = server.with(&LimitOverrides {
        timeout: Some(timeout),
        ..LimitOverrides::default()
    });
    Ok(Limits {
        // The backstop that goes with the lower limit, never above the server's.
        wall_timeout: lowered.wall_timeout.min(server.wall_timeout),
        ..lowered
    })
}

/// The `files` as the launcher takes them: decoded contents, checked by [`InputFiles`] (the caps
/// and names of `run --file`: [`MAX_INPUT_FILES`], [`MAX_INPUT_BYTES`]).
fn input_files(files: Vec<FileArg>, program: &str) -> Result<Vec<InputFile>, ArgumentError> {
    let mut checked = InputFiles::new(program, files.len()).map_err(refusal)?;
    for file in files {
        let bytes = match file.encoding {
            FileEncoding::Text => file.content.into_bytes(),
            FileEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(file.content.trim())
                .map_err(|error| ArgumentError::File {
                    name: crate::sanitize::text(&file.name).into_owned(),
                    reason: format!(
                        "`content` is not standard base64 ({error}): encode the bytes with \
                         padding, or give text with `encoding: \"text\"`"
                    ),
                })?,
        };
        checked.add(&file.name, bytes).map_err(refusal)?;
    }
    Ok(checked.into_files())
}

/// A refusal of [`InputFiles`] in this tool's words.
fn refusal(error: InputFilesError) -> ArgumentError {
    match error {
        InputFilesError::TooMany { count } => ArgumentError::TooManyFiles { count },
        InputFilesError::TooLarge => ArgumentError::FilesTooLarge,
        InputFilesError::Taken { name } => ArgumentError::File {
            name,
            reason: "another file (or the program, main.py) already has this name".to_owned(),
        },
        InputFilesError::Name(reason) => ArgumentError::FileName(reason),
    }
}

/// The structured result of a call: the run's outcome, as `run --json` reports it (without
/// `schema_version`), and how each artifact came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    /// How the run ended: ok, runtime_error (non-zero exit or a signal), timeout, memory_limit,
    /// output_limit, rejected (the engine refused one of the server's limits), sandbox_error (the
    /// sandbox failed; the program may not have run) or interrupted (the server was stopping, or
    /// the call was cancelled).
    #[schemars(schema_with = "status_schema")]
    pub status: Status,
    /// The program's exit code; null when it did not end by itself.
    pub exit_code: Option<i32>,
    /// The signal that killed the program, when none of the limits did (e.g. 11).
    pub signal: Option<i32>,
    /// What the program wrote to stdout, up to the output cap.
    pub stdout: String,
    /// `utf-8`: `stdout` is the text; `base64`: it was not UTF-8 and `stdout` is its bytes in
    /// base64.
    #[schemars(schema_with = "encoding_schema")]
    pub stdout_encoding: Encoding,
    /// stdout passed the output cap and was cut there.
    pub stdout_truncated: bool,
    /// What the program wrote to stderr, up to the output cap.
    pub stderr: String,
    /// As `stdout_encoding`, for `stderr`.
    #[schemars(schema_with = "encoding_schema")]
    pub stderr_encoding: Encoding,
    /// stderr passed the output cap and was cut there.
    pub stderr_truncated: bool,
    /// CPU time of all the program's processes, in milliseconds (what the time limit counts);
    /// null when the program did not start or its end was not reported.
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock time from the program's start to its end, in milliseconds.
    pub duration_ms: u64,
    /// What went wrong, when `status` is not ok.
    pub error: Option<String>,
    /// The limits this run had.
    pub limits: AppliedLimits,
    /// What the program left in `out/`.
    pub artifacts: ArtifactsResult,
}

/// The limits a run had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppliedLimits {
    /// CPU time limit, seconds.
    pub timeout_secs: f64,
    /// Wall-clock limit, seconds.
    pub wall_timeout_secs: f64,
    /// Memory limit (swap included), bytes.
    pub memory_bytes: u64,
    /// CPU quota, cores.
    pub cpus: f64,
    /// Most processes and threads at once.
    pub pids: u32,
    /// Longest code accepted, in characters.
    pub max_code_chars: usize,
    /// Cap on each of stdout and stderr, bytes.
    pub max_output_bytes: u64,
}

/// The files the program left in `out/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactsResult {
    /// Every file that came back, in the order of the content items.
    pub files: Vec<ArtifactResult>,
    /// Files that did not come back (a link, a special file, past the count cap), and why.
    pub skipped: Vec<SkippedResult>,
    /// More was there than the artifact cap (8 MiB, 64 files) let through.
    pub truncated: bool,
}

/// One file from `out/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactResult {
    /// Its path under `out/`.
    pub name: String,
    /// Its size in the sandbox, bytes.
    pub size: u64,
    /// Guessed from its extension.
    pub media_type: String,
    /// Cut short by the artifact cap.
    pub truncated: bool,
    /// How it came back: `image` (an image content item), `text` or `blob` (an embedded resource
    /// `safe-exec:out/NAME` with its text, or its bytes in base64), or `listed` (only here: past
    /// the 1 MiB for files other than images, or an image cut short).
    pub returned_as: ReturnedAs,
}

/// How an artifact came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReturnedAs {
    Image,
    Text,
    Blob,
    Listed,
}

/// A file in `out/` that did not come back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkippedResult {
    pub name: String,
    pub reason: String,
}

fn status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

fn encoding_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["utf-8", "base64"] })
}

/// The tool's result for `outcome`: the structured [`RunResult`], the same as JSON text, then the
/// artifacts as content items. `isError` is set exactly when the status is not `ok`.
pub fn result(outcome: Outcome) -> CallToolResult {
    let mut content = Vec::new();
    let mut inline = 0u64;
    let mut files = Vec::with_capacity(outcome.artifacts.files.len());
    for artifact in &outcome.artifacts.files {
        let media = media_type(&artifact.name);
        let size = artifact.bytes.len() as u64;
        let is_image = IMAGE_TYPES.contains(&media);
        let returned_as = if is_image && !artifact.truncated {
            content.push(ContentBlock::image(base64(&artifact.bytes), media));
            ReturnedAs::Image
        } else if !is_image && inline + size <= MAX_INLINE_FILE_BYTES {
            inline += size;
            let uri = format!("safe-exec:out/{}", artifact.name);
            let (resource, returned_as) = match std::str::from_utf8(&artifact.bytes) {
                Ok(text) => (ResourceContents::text(text, uri), ReturnedAs::Text),
                Err(_) => (
                    ResourceContents::blob(base64(&artifact.bytes), uri),
                    ReturnedAs::Blob,
                ),
            };
            content.push(ContentBlock::resource(resource.with_mime_type(media)));
            returned_as
        } else {
            ReturnedAs::Listed
        };
        files.push(ArtifactResult {
            name: artifact.name.clone(),
            size: artifact.size,
            media_type: media.to_owned(),
            truncated: artifact.truncated,
            returned_as,
        });
    }
    let applied = outcome.limits.applied();
    let status = outcome.status;
    let (stdout_truncated, stderr_truncated) = (outcome.stdout.truncated, outcome.stderr.truncated);
    let (stdout, stdout_encoding) = encode_output(outcome.stdout);
    let (stderr, stderr_encoding) = encode_output(outcome.stderr);
    let structured = RunResult {
        status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        stdout,
        stdout_encoding,
        stdout_truncated,
        stderr,
        stderr_encoding,
        stderr_truncated,
        cpu_time_ms: outcome.cpu_time.map(millis),
        duration_ms: millis(outcome.duration),
        error: outcome
            .error
            .map(|error| crate::sanitize::text(&error).into_owned()),
        limits: AppliedLimits {
            timeout_secs: applied.timeout_secs,
            wall_timeout_secs: applied.wall_timeout_secs,
            memory_bytes: applied.memory_bytes,
            cpus: applied.cpus,
            pids: applied.pids,
            max_code_chars: applied.max_code_chars,
            max_output_bytes: applied.max_output_bytes,
        },
        artifacts: ArtifactsResult {
            files,
            skipped: outcome
                .artifacts
                .skipped
                .iter()
                .map(|skipped| SkippedResult {
                    name: skipped.name.clone(),
                    reason: skipped.reason.clone(),
                })
                .collect(),
            truncated: outcome.artifacts.truncated,
        },
    };
    let value = serde_json::to_value(&structured).unwrap_or(serde_json::Value::Null);
    let text = serde_json::to_string_pretty(&structured).unwrap_or_default();
    content.insert(0, ContentBlock::text(text));
    let mut result = if status == Status::Ok {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    };
    result.structured_content = Some(value);
    result
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::artifacts::{Artifact, Artifacts, SkippedArtifact};
    use crate::report::Captured;

    fn args(value: serde_json::Value) -> Result<RunPythonArgs, ArgumentError> {
        let serde_json::Value::Object(object) = value else {
            panic!("arguments are an object");
        };
        parse(Some(object))
    }

    fn job_for(value: serde_json::Value) -> Result<Job, ArgumentError> {
        job(args(value)?, &Limits::default())
    }

    fn refusal(value: serde_json::Value) -> String {
        match job_for(value) {
            Ok(job) => panic!("accepted: {job:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_call_becomes_a_job_with_the_server_s_limits() {
        let job = job_for(json!({
            "code": "print(input())",
            "stdin": "Ada\n",
            "files": [
                {"name": "data.csv", "content": "a,b\n"},
                {"name": "raw.bin", "content": "AAEC/w==", "encoding": "base64"},
            ],
        }))
        .unwrap();
        assert_eq!(job.limits, Limits::default());
        assert!(matches!(&job.stdin, ProgramStdin::Bytes(bytes) if bytes == b"Ada\n"));
        let files: Vec<(&str, &[u8])> = job
            .files
            .iter()
            .map(|file| (file.name(), file.bytes()))
            .collect();
        assert_eq!(
            files,
            [
                ("data.csv", &b"a,b\n"[..]),
                ("raw.bin", &[0u8, 1, 2, 255][..])
            ]
        );
        let bare = job_for(json!({"code": "pass"})).unwrap();
        assert!(matches!(bare.stdin, ProgramStdin::Empty));
        assert!(bare.files.is_empty());
    }

    #[test]
    fn arguments_that_do_not_fit_the_schema_are_refused() {
        for (value, words) in [
            (json!({}), "missing field `code`"),
            (json!({"code": 1}), "invalid type"),
            (
                json!({"code": "x", "timeout": 1}),
                "unknown field `timeout`",
            ),
            (
                json!({"code": "x", "files": [{"name": "a", "content": "b", "encoding": "hex"}]}),
                "unknown variant `hex`",
            ),
        ] {
            let message = refusal(value.clone());
            assert!(
                message.starts_with("the arguments of run_python do not fit its inputSchema"),
                "{message}"
            );
            assert!(message.contains(words), "{value}: {message}");
        }
        assert!(matches!(parse(None), Err(ArgumentError::Shape { .. })));
    }

    #[test]
    fn code_and_input_are_held_to_run_s_rules() {
        let long = "x".repeat(5001);
        for (value, words) in [
            (json!({"code": "  \n"}), "no code to run"),
            (json!({"code": "a\u{0}b"}), "NUL byte (line 1, column 2)"),
            (
                json!({"code": long}),
                "5001 characters long; this server takes at most 5000",
            ),
            (
                json!({"code": "x", "stdin": "y".repeat(MAX_STDIN_BYTES + 1)}),
                "`stdin` is 8388609 bytes",
            ),
        ] {
            let message = refusal(value);
            assert!(message.contains(words), "{words:?} not in {message:?}");
        }
    }

    #[test]
    fn files_are_held_to_run_file_s_rules() {
        let file = |name: &str| json!({"name": name, "content": "x"});
        for (files, words) in [
            (vec![file("../etc")], "`../etc` is not a usable file name"),
            (vec![file(".hidden")], "is not a usable file name"),
            (vec![file("out")], "is not a usable file name"),
            (
                vec![file("a\u{1b}[31m")],
                "`a\\u{1b}[31m` is not a usable file name",
            ),
            (
                vec![file("main.py")],
                "`main.py`: another file (or the program",
            ),
            (vec![file("a"), file("a")], "`a`: another file"),
            (
                (0..=MAX_INPUT_FILES)
                    .map(|n| file(&format!("f{n}")))
                    .collect(),
                "33 files given, at most 32",
            ),
            (
                vec![json!({"name": "b", "content": "not base64!", "encoding": "base64"})],
                "`b`: `content` is not standard base64",
            ),
            (
                vec![
                    json!({"name": "big", "content": "y".repeat(MAX_INPUT_BYTES as usize)}),
                    file("one-more"),
                ],
                "more than 8 MiB in all",
            ),
        ] {
            let message = refusal(json!({"code": "pass", "files": files}));
            assert!(message.starts_with("`files`: "), "{message}");
            assert!(message.contains(words), "{words:?} not in {message:?}");
        }
    }

    #[test]
    fn a_call_may_lower_the_time_limit_but_never_raise_it() {
        let server = Limits::default();
        assert_eq!(call_limits(&server, None).unwrap(), server);
        assert_eq!(call_limits(&server, Some(10.0)).unwrap(), server);
        let lowered = call_limits(&server, Some(2.5)).unwrap();
        assert_eq!(lowered.timeout, Duration::from_millis(2500));
        assert_eq!(lowered.wall_timeout, Duration::from_secs(6));
        assert_eq!(lowered.memory_bytes, server.memory_bytes);
        // The backstop of a lower limit never passes the server's own.
        let tight_wall = Limits {
            wall_timeout: Duration::from_secs(3),
            ..server
        };
        assert_eq!(
            call_limits(&tight_wall, Some(2.5)).unwrap().wall_timeout,
            Duration::from_secs(3)
        );
        for (secs, words) in [
            (
                10.5,
                "10.5 s is above this server's time limit of 10 s: ask for at most 10",
            ),
            (0.0, "more than 0 seconds"),
            (-1.0, "more than 0 seconds"),
        ] {
            let message = call_limits(&server, Some(secs)).unwrap_err().to_string();
            assert!(message.starts_with("`timeout_secs`: "), "{message}");
            assert!(message.contains(words), "{words:?} not in {message:?}");
        }
    }

    #[test]
    fn the_definition_describes_the_server() {
        let limits = Limits {
            timeout: Duration::from_secs(3),
            ..Limits::default()
        };
        let tool = definition(&limits, true);
        assert_eq!(tool.name, TOOL_NAME);
        let description = tool.description.as_deref().unwrap();
        assert!(description.contains("3 s of CPU time"), "{description}");
        assert!(description.contains("plt.show()"), "{description}");
        assert!(!definition(&limits, false)
            .description
            .unwrap()
            .contains("matplotlib"));
        let input = serde_json::Value::Object(tool.input_schema.as_ref().clone());
        assert_eq!(input["required"], json!(["code"]));
        assert_eq!(input["properties"]["timeout_secs"]["maximum"], 3.0);
        assert_eq!(input["properties"]["timeout_secs"]["exclusiveMinimum"], 0);
        let output = serde_json::Value::Object(tool.output_schema.unwrap().as_ref().clone());
        let statuses = &output["properties"]["status"]["enum"];
        assert_eq!(statuses.as_array().unwrap().len(), Status::ALL.len());
    }

    fn artifact(name: &str, bytes: &[u8], truncated: bool) -> Artifact {
        Artifact {
            name: name.to_owned(),
            bytes: bytes.to_vec(),
            size: bytes.len() as u64 + u64::from(truncated),
            truncated,
        }
    }

    fn outcome(status: Status, files: Vec<Artifact>) -> Outcome {
        Outcome {
            exit_code: (status == Status::Ok).then_some(0),
            stdout: Captured {
                bytes: b"out\n".to_vec(),
                seen: 4,
                truncated: false,
            },
            stderr: Captured {
                bytes: vec![0xff, 0xfe],
                seen: 2,
                truncated: false,
            },
            duration: Duration::from_millis(1234),
            cpu_time: Some(Duration::from_millis(56)),
            artifacts: Artifacts {
                files,
                skipped: vec![SkippedArtifact {
                    name: "link".to_owned(),
                    reason: "a symbolic link".to_owned(),
                }],
                truncated: false,
            },
            error: (status != Status::Ok).then(|| "went\nwrong".to_owned()),
            ..Outcome::not_run(status, "", Limits::default())
        }
    }

    #[test]
    fn images_come_back_as_images_and_other_files_as_resources_within_the_cap() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        let big = vec![b'z'; MAX_INLINE_FILE_BYTES as usize];
        let files = vec![
            artifact("plot.png", png, false),
            artifact("cut.png", png, true),
            artifact("drawing.svg", b"<svg/>", false),
            artifact("data.bin", &[0, 159, 146, 150], false),
            artifact("big.txt", &big, false),
            artifact("notes/later.txt", b"hi", false),
        ];
        let result = result(outcome(Status::Ok, files));
        assert_eq!(result.is_error, Some(false));
        let structured: RunResult =
            serde_json::from_value(result.structured_content.clone().unwrap()).unwrap();
        let returned: Vec<(&str, ReturnedAs)> = structured
            .artifacts
            .files
            .iter()
            .map(|file| (file.name.as_str(), file.returned_as))
            .collect();
        assert_eq!(
            returned,
            [
                ("plot.png", ReturnedAs::Image),
                ("cut.png", ReturnedAs::Listed),
                ("drawing.svg", ReturnedAs::Text),
                ("data.bin", ReturnedAs::Blob),
                // Past the inline budget: listed only. A later small file still fits.
                ("big.txt", ReturnedAs::Listed),
                ("notes/later.txt", ReturnedAs::Text),
            ]
        );
        assert_eq!(structured.artifacts.skipped[0].name, "link");
        let content = serde_json::to_value(&result.content).unwrap();
        let kinds: Vec<&str> = content
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["text", "image", "resource", "resource", "resource"]);
        assert_eq!(content[1]["mimeType"], "image/png");
        assert_eq!(content[1]["data"], base64(png));
        assert_eq!(content[2]["resource"]["uri"], "safe-exec:out/drawing.svg");
        assert_eq!(content[2]["resource"]["mimeType"], "image/svg+xml");
        assert_eq!(content[2]["resource"]["text"], "<svg/>");
        assert_eq!(content[3]["resource"]["blob"], base64(&[0, 159, 146, 150]));
        assert_eq!(
            content[4]["resource"]["uri"],
            "safe-exec:out/notes/later.txt"
        );
        // The first item is the structured result as JSON text.
        let echoed: RunResult = serde_json::from_str(content[0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(echoed, structured);
    }

    #[test]
    fn is_error_is_set_exactly_when_the_status_is_not_ok() {
        for status in Status::ALL {
            let result = result(outcome(status, Vec::new()));
            assert_eq!(result.is_error, Some(status != Status::Ok), "{status:?}");
            let structured: RunResult =
                serde_json::from_value(result.structured_content.unwrap()).unwrap();
            assert_eq!(structured.status, status);
            assert_eq!(structured.stdout, "out\n");
            assert_eq!(structured.stdout_encoding, Encoding::Utf8);
            assert_eq!(structured.stderr, "//4=");
            assert_eq!(structured.stderr_encoding, Encoding::Base64);
            assert_eq!(structured.cpu_time_ms, Some(56));
            assert_eq!(structured.duration_ms, 1234);
            if status != Status::Ok {
                // Outside text in a message is escaped.
                assert_eq!(structured.error.as_deref(), Some("went\\nwrong"));
            }
        }
    }
}
