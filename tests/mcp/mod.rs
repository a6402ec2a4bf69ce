//! `safe-exec mcp` against the real engine, driven by a real MCP client: the Python `mcp` SDK,
//! installed with pip into a virtualenv under cargo's target directory the first time (it needs
//! `python3` with `venv`, and PyPI reachable; later runs reuse it). Like the engine tests, these
//! fail (never skip) when that is not possible.
//!
//! The client script (`client.py`, written to a temporary directory) starts the server, runs a
//! plan of calls and prints what it saw as one JSON document, which the tests here read into
//! typed structs. [`stopping`] speaks JSON-RPC itself, to stop runs and the server mid-run.

mod stopping;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use safe_exec::mcp::tool::{ReturnedAs, RunResult};
use safe_exec::report::Status;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{test_image, Session};

/// The `mcp` SDK release line the client script is written for.
const REQUIREMENT: &str = "mcp>=2.3,<3";
/// The client script.
const CLIENT: &str = include_str!("client.py");
/// How long one client script may take (it installs nothing; runs wait for a loaded engine).
const CLIENT_BUDGET: Duration = Duration::from_secs(400);

/// What the client saw; see `client.py`.
#[derive(Debug, Deserialize)]
struct Transcript {
    initialize: Initialize,
    steps: Vec<Step>,
    /// How long closing the connection took, the server's exit included.
    close_seconds: f64,
    total_seconds: f64,
}

#[derive(Debug, Deserialize)]
struct Initialize {
    protocol_version: String,
    server_name: String,
    server_version: String,
    has_tools: bool,
    instructions: Option<String>,
}

/// One step: a listing, a tool result, or a protocol error.
#[derive(Debug, Deserialize)]
struct Step {
    tools: Option<Vec<ListedTool>>,
    is_error: Option<bool>,
    structured: Option<RunResult>,
    #[serde(default)]
    content: Vec<Item>,
    protocol_error: Option<ProtocolError>,
    seconds: f64,
}

impl Step {
    /// The structured result, with a clear failure otherwise.
    fn result(&self) -> &RunResult {
        self.structured
            .as_ref()
            .unwrap_or_else(|| panic!("not a tool result: {self:?}"))
    }

    fn protocol_error(&self) -> &ProtocolError {
        self.protocol_error
            .as_ref()
            .unwrap_or_else(|| panic!("not a protocol error: {self:?}"))
    }
}

#[derive(Debug, Deserialize)]
struct ListedTool {
    name: String,
    description: Option<String>,
    input_schema: Value,
    output_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Item {
    Text {
        text: String,
    },
    Image {
        mime_type: String,
        data: String,
    },
    Resource {
        uri: String,
        mime_type: Option<String>,
        text: Option<String>,
        blob: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct ProtocolError {
    code: i64,
    message: String,
}

/// The virtualenv's python, installing the SDK first if needed. Tests run in processes of their
/// own, so the install is serialised by a lock file.
fn client_python() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = target.join("mcp-venv");
    let python = venv.join("bin").join("python");
    let ready = venv.join(".safe-exec-ready");
    let lock = std::fs::File::create(target.join("mcp-venv.lock")).expect("lock file");
    // SAFETY: flock(2) on a descriptor we own; released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if ready.is_file() {
        return python;
    }
    let run = |command: &mut Command, what: &str| {
        let output = command.output().unwrap_or_else(|error| {
            panic!("cannot {what} ({error}): install python3 and its venv module (Debian: python3-venv)")
        });
        assert!(
            output.status.success(),
            "cannot {what} (Debian needs python3-venv for a virtualenv): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "create a virtualenv for the MCP client",
    );
    run(
        Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", REQUIREMENT]),
        "install the Python MCP SDK with pip (is PyPI reachable?)",
    );
    std::fs::write(&ready, REQUIREMENT).unwrap();
    python
}

/// Run the client with `server_args` after `safe-exec mcp` and these `steps`; what it saw.
fn run_client(session: &Session, server_args: &[&str], steps: &[Value]) -> Transcript {
    let python = client_python();
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    // MCP clients start servers with a small environment of their own: pass what the server
    // needs to find the engine and label its containers.
    let mut env = serde_json::Map::new();
    env.insert("SAFE_EXEC_LABEL".into(), session.label.clone().into());
    for name in [
        "SAFE_EXEC_DOCKER",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
    ] {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.into(), value.into());
        }
    }
    let mut args = vec!["mcp".to_owned()];
    args.extend(server_args.iter().map(|arg| (*arg).to_owned()));
    let plan = json!({
        "command": assert_cmd::cargo::cargo_bin("safe-exec"),
        "args": args,
        "env": env,
        "steps": steps,
    });
    let plan_path = work.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let mut child = Command::new(python)
        .arg(&script)
        .arg(&plan_path)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the MCP client starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let until = Instant::now() + CLIENT_BUDGET;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let status = status.unwrap_or_else(|| {
        panic!("the MCP client did not finish in {CLIENT_BUDGET:?}; its stderr (and the server's):\n{stderr}")
    });
    assert!(
        status.success(),
        "the MCP client failed; its stderr (and the server's):\n{stderr}"
    );
    let transcript: Transcript = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!("the client's transcript is not JSON ({error}):\n{stdout}\nstderr:\n{stderr}")
    });
    // For whoever reads the test's output: what the server said on stderr.
    eprintln!("server and client stderr:\n{stderr}");
    transcript
}

/// Fail loudly (never skip) when the data-science image is missing.
fn require_ds_image() {
    let image = safe_exec::sandbox::DS_IMAGE;
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "the data-science image {image} is missing ({}): build it with `safe-exec image build \
         --ds` (or `SAFE_EXEC_DS=1 bash scripts/setup.sh`)",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

fn call(arguments: Value) -> Value {
    json!({"call": "run_python", "arguments": arguments})
}

const HELLO: &str =
    "import sys\nprint('hello from the sandbox')\nprint('a warning', file=sys.stderr)\n";

/// Reads its stdin and two files, writes two artifacts, and checks its inputs are read-only.
const FILES_IN_AND_OUT: &str = r#"import sys
rows = open("points.csv").read().splitlines()
raw = open("bytes.bin", "rb").read()
print(sys.stdin.read().strip().upper())
print(len(rows), len(raw), sum(raw))
with open("out/summary.txt", "w") as summary:
    summary.write("rows=%d\n" % len(rows))
with open("out/copy.bin", "wb") as copy:
    copy.write(raw)
try:
    open("points.csv", "a")
except OSError as error:
    print("read-only:", type(error).__name__)
"#;

/// The base image with a small time limit: list the tool, then one call per case, then arguments
/// that are refused. Every result is checked against the tool's outputSchema by the SDK.
#[test]
fn mcp_client_lists_the_tool_runs_code_and_sees_every_status() {
    let session = Session::new();
    let image = test_image();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let all_bytes_base64 = base64::engine::general_purpose::STANDARD.encode(&all_bytes);
    let steps = [
        json!({"list_tools": true}),
        call(json!({"code": HELLO})),
        call(json!({
            "code": FILES_IN_AND_OUT,
            "stdin": "ada lovelace\n",
            "files": [
                {"name": "points.csv", "content": "x,y\n1,2\n3,4\n"},
                {"name": "bytes.bin", "content": all_bytes_base64, "encoding": "base64"},
            ],
        })),
        call(json!({"code": "import sys\nsys.exit(3)"})),
        call(json!({"code": "while True: pass"})),
        call(json!({"code": "while True: pass", "timeout_secs": 0.5})),
        call(json!({"code": "x = 'a' * 1000000000"})),
        call(json!({})),
        call(json!({"code": "print(1)", "files": [{"name": "../escape", "content": "x"}]})),
        call(json!({"code": "print(1)", "timeout_secs": 5})),
        call(
            json!({"code": "print(1)", "files": [{"name": "a.bin", "content": "%%%", "encoding": "base64"}]}),
        ),
        json!({"call": "run_ruby", "arguments": {"code": "puts 1"}}),
    ];
    // A generous wall-clock backstop: the time limit under test is CPU time, and the engine is
    // shared with other work.
    let transcript = run_client(
        &session,
        &[
            "--image",
            &image,
            "--timeout",
            "2",
            "--wall-timeout",
            "120",
            "--pool",
            "1",
        ],
        &steps,
    );
    // Nothing is left once the client has closed the connection.
    session.assert_clean();

    let init = &transcript.initialize;
    assert_eq!(init.server_name, "safe-exec");
    assert_eq!(init.server_version, env!("CARGO_PKG_VERSION"));
    assert!(init.has_tools, "{init:?}");
    assert!(!init.protocol_version.is_empty());
    assert!(init
        .instructions
        .as_deref()
        .is_some_and(|text| text.contains("run_python")));

    let steps = &transcript.steps;
    let tools = steps[0].tools.as_ref().expect("a tool listing");
    assert_eq!(tools.len(), 1);
    let tool = &tools[0];
    assert_eq!(tool.name, "run_python");
    assert!(tool
        .description
        .as_deref()
        .is_some_and(|text| text.contains("2 s of CPU time")));
    let input = &tool.input_schema;
    assert_eq!(input["type"], "object");
    assert_eq!(input["required"], json!(["code"]));
    assert_eq!(input["additionalProperties"], false);
    let mut properties: Vec<&str> = input["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    properties.sort_unstable();
    assert_eq!(properties, ["code", "files", "stdin", "timeout_secs"]);
    assert_eq!(input["properties"]["timeout_secs"]["maximum"], 2.0);
    let output = tool.output_schema.as_ref().expect("an output schema");
    assert_eq!(output["type"], "object");
    assert!(output["required"]
        .as_array()
        .unwrap()
        .contains(&json!("status")));

    // Code runs: stdout, stderr, exit code; the first content item is the result as JSON.
    let hello = &steps[1];
    assert_eq!(hello.is_error, Some(false));
    let result = hello.result();
    assert_eq!(result.status, Status::Ok);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.stdout, "hello from the sandbox\n");
    assert_eq!(result.stderr, "a warning\n");
    assert!(result.cpu_time_ms.is_some());
    match &hello.content[..] {
        [Item::Text { text }] => {
            let echoed: RunResult = serde_json::from_str(text).unwrap();
            assert_eq!(&echoed, result);
        }
        other => panic!("expected one text item: {other:?}"),
    }

    // Files in (text and base64, read-only to the program) and stdin; files out as resources.
    let files = &steps[2];
    let result = files.result();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(
        result.stdout,
        "ADA LOVELACE\n3 256 32640\nread-only: PermissionError\n"
    );
    let returned: Vec<(&str, ReturnedAs)> = result
        .artifacts
        .files
        .iter()
        .map(|file| (file.name.as_str(), file.returned_as))
        .collect();
    assert_eq!(returned.len(), 2, "{:?}", result.artifacts);
    assert!(returned.contains(&("summary.txt", ReturnedAs::Text)));
    assert!(returned.contains(&("copy.bin", ReturnedAs::Blob)));
    let mut resources = 0;
    for item in &files.content[1..] {
        match item {
            Item::Resource {
                uri,
                mime_type,
                text,
                blob,
            } if uri == "safe-exec:out/summary.txt" => {
                assert_eq!(mime_type.as_deref(), Some("text/plain"));
                assert_eq!(text.as_deref(), Some("rows=3\n"));
                assert!(blob.is_none());
                resources += 1;
            }
            Item::Resource { uri, blob, .. } if uri == "safe-exec:out/copy.bin" => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(blob.as_deref().expect("a blob"))
                    .unwrap();
                assert_eq!(bytes, all_bytes);
                resources += 1;
            }
            other => panic!("unexpected content item: {other:?}"),
        }
    }
    assert_eq!(resources, 2);

    // A program that fails is a result, flagged as an error, with its status.
    let failed = steps[3].result();
    assert_eq!(steps[3].is_error, Some(true));
    assert_eq!(failed.status, Status::RuntimeError);
    assert_eq!(failed.exit_code, Some(3));

    // The server's CPU time limit.
    let timeout = steps[4].result();
    assert_eq!(steps[4].is_error, Some(true));
    assert_eq!(timeout.status, Status::Timeout, "{timeout:?}");
    assert_eq!(timeout.limits.timeout_secs, 2.0);
    assert!(
        timeout.cpu_time_ms.is_some_and(|cpu| cpu >= 2000),
        "{timeout:?}"
    );

    // A call may lower it. Its wall-clock backstop comes down with it (2 × 0.5 + 1 s): on a
    // machine busy enough that the spinning program gets less than a quarter of a core, that
    // backstop ends it first, and the report says which limit it was.
    let lowered = steps[5].result();
    assert_eq!(lowered.status, Status::Timeout, "{lowered:?}");
    assert_eq!(lowered.limits.timeout_secs, 0.5);
    assert_eq!(lowered.limits.wall_timeout_secs, 2.0);
    let by_cpu = lowered
        .cpu_time_ms
        .is_some_and(|cpu| (500..2000).contains(&cpu));
    let by_wall = lowered.duration_ms >= 2000
        && lowered
            .error
            .as_deref()
            .is_some_and(|error| error.contains("wall-clock"));
    assert!(by_cpu || by_wall, "{lowered:?}");

    // The memory limit.
    let bomb = steps[6].result();
    assert_eq!(steps[6].is_error, Some(true));
    assert_eq!(bomb.status, Status::MemoryLimit, "{bomb:?}");

    // Refused arguments are protocol errors (invalid params) that say what is wrong.
    for (step, words) in [
        (&steps[7], "missing field `code`"),
        (&steps[8], "`../escape` is not a usable file name"),
        (&steps[9], "ask for at most 2"),
        (&steps[10], "not standard base64"),
        (&steps[11], "unknown tool `run_ruby`"),
    ] {
        let error = step.protocol_error();
        assert_eq!(error.code, -32602, "{error:?}");
        assert!(error.message.contains(words), "{words:?} not in {error:?}");
    }

    eprintln!(
        "transcript: {} steps in {:.1} s (calls: {:?} s); closing took {:.1} s",
        steps.len(),
        transcript.total_seconds,
        steps.iter().map(|step| step.seconds).collect::<Vec<_>>(),
        transcript.close_seconds
    );
}

/// The data-science image: `plt.show()` saves the figure into out/, and the client receives it as
/// an image content item that decodes as a PNG. The image is kept in cargo's target directory
/// (`mcp-plot.png`) for a person to look at.
#[test]
fn mcp_client_receives_a_plot_as_an_image() {
    let session = Session::new();
    require_ds_image();
    let plot = "import matplotlib.pyplot as plt\n\
                plt.plot([1, 2, 3, 4], [1, 4, 9, 16], marker='o')\n\
                plt.title('squares')\n\
                plt.show()\n\
                print('shown')\n";
    // Importing matplotlib from a cold page cache can take many seconds of wall-clock time on a
    // loaded machine; the limits are generous so the test is about the image.
    let transcript = run_client(
        &session,
        &["--image", "ds", "--timeout", "30", "--wall-timeout", "300"],
        &[call(json!({"code": plot}))],
    );
    session.assert_clean();

    let step = &transcript.steps[0];
    assert_eq!(step.is_error, Some(false), "{step:?}");
    let result = step.result();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(result.stdout, "shown\n");
    let [artifact] = &result.artifacts.files[..] else {
        panic!("expected one artifact: {:?}", result.artifacts);
    };
    assert_eq!(artifact.media_type, "image/png");
    assert_eq!(artifact.returned_as, ReturnedAs::Image);
    let images: Vec<(&str, &str)> = step
        .content
        .iter()
        .filter_map(|item| match item {
            Item::Image { mime_type, data } => Some((mime_type.as_str(), data.as_str())),
            _ => None,
        })
        .collect();
    let [(mime_type, data)] = images[..] else {
        panic!("expected one image item: {:?}", step.content);
    };
    assert_eq!(mime_type, "image/png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(png.len() as u64, artifact.size);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 100 && height >= 100, "{width}x{height}");
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-plot.png");
    std::fs::write(&kept, &png).unwrap();
    eprintln!(
        "plot: {width}x{height} PNG, {} bytes, kept at {}",
        png.len(),
        kept.display()
    );
}
