//! Files in, artifacts out and live output over HTTP, against the real engine: `files` in a run
//! request (checked as `run --file` checks them), the run report's `artifacts` (with their bytes
//! when asked for), and `POST /api/v1/runs` as server-sent events.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use base64::Engine as _;
use safe_exec::report::{RunReport, Status};
use serde_json::{json, Value};

use super::{Reply, Server};
use crate::common::Session;

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unbase64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// One server-sent event, and when it was read.
#[derive(Debug, Clone)]
struct Event {
    name: String,
    data: Value,
    at: Instant,
}

/// POST `body` to `/api/v1/runs` asking for events; the answer's status and content type, and
/// its events as they came (comments left out).
fn post_events(server: &Server, body: &Value) -> (u16, String, Vec<Event>) {
    let response = server
        .agent
        .post(&server.url("/api/v1/runs"))
        .set("Content-Type", "application/json")
        .set("Accept", "text/event-stream")
        .send_string(&body.to_string());
    let response = match response {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("HTTP request failed: {error}"),
    };
    let status = response.status();
    let content_type = response.header("Content-Type").unwrap_or("").to_owned();
    if !content_type.starts_with("text/event-stream") {
        let body = response.into_string().unwrap();
        return (
            status,
            content_type,
            vec![Event {
                name: "answer".into(),
                data: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                at: Instant::now(),
            }],
        );
    }
    let mut events = Vec::new();
    let (mut name, mut data) = (String::new(), Vec::<String>::new());
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.expect("the event stream reads to its end");
        if line.is_empty() {
            if !data.is_empty() {
                events.push(Event {
                    name: std::mem::take(&mut name),
                    data: serde_json::from_str(&data.join("\n")).expect("event data is JSON"),
                    at: Instant::now(),
                });
            }
            data.clear();
            name.clear();
        } else if let Some(value) = line.strip_prefix("event: ") {
            name = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value.to_owned());
        } else {
            assert!(line.starts_with(':'), "not an event line: {line:?}");
        }
    }
    (status, content_type, events)
}

/// The bytes of a stream's live events, joined in order.
fn joined(events: &[Event], stream: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events.iter().filter(|event| event.name == stream) {
        match (event.data.get("text"), event.data.get("base64")) {
            (Some(Value::String(text)), None) => bytes.extend_from_slice(text.as_bytes()),
            (None, Some(Value::String(encoded))) => bytes.extend(unbase64(encoded)),
            _ => panic!("an event is text or base64: {:?}", event.data),
        }
    }
    bytes
}

/// A report without what differs from run to run.
fn steady(mut report: Value) -> Value {
    report["duration_ms"] = json!(0);
    report["cpu_time_ms"] = json!(0);
    report
}

#[test]
fn files_in_and_artifacts_out_over_the_api() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8, 1, 2, 255]].concat();
    let code = "import os\n\
                rows = open('data.csv').read().split()\n\
                print(len(rows), open('notes.txt').read(), open('raw.bin', 'rb').read().hex())\n\
                os.makedirs('out/sub')\n\
                open('out/result.txt', 'w').write(','.join(reversed(rows)))\n\
                open('out/sub/plot.png', 'wb').write(open('raw.bin', 'rb').read())\n\
                os.symlink('/etc/passwd', 'out/link')\n";
    let request = |artifact_content: bool| {
        json!({
            "code": code,
            "files": [
                {"name": "data.csv", "content_base64": base64(b"a,1\nb,2\n")},
                {"name": "notes.txt", "content": "héllo"},
                {"name": "raw.bin", "content_base64": base64(&png)},
            ],
            "artifact_content": artifact_content,
        })
    };
    let answer = server.post("/api/v1/runs", &request(true));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let report = answer.report();
    assert_eq!(report.status, Status::Ok, "{}", answer.body);
    assert_eq!(
        report.stdout,
        format!(
            "2 héllo {}\n",
            png.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    );
    let files = &report.artifacts.files;
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(names, ["result.txt", "sub/plot.png"], "{}", answer.body);
    assert_eq!(files[0].media_type, "text/plain");
    assert_eq!(
        unbase64(files[0].content_base64.as_ref().unwrap()),
        b"b,2,a,1"
    );
    assert_eq!(files[1].media_type, "image/png");
    assert_eq!(files[1].size, png.len() as u64);
    assert_eq!(unbase64(files[1].content_base64.as_ref().unwrap()), png);
    assert_eq!(report.artifacts.skipped.len(), 1, "{}", answer.body);
    assert_eq!(report.artifacts.skipped[0].name, "link");

    // Listed without their bytes unless asked for; the rest of the report is the same.
    let listed = server.post("/api/v1/runs", &request(false));
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed_report = listed.report();
    assert!(listed_report
        .artifacts
        .files
        .iter()
        .all(|file| file.content_base64.is_none()));
    let without_content = |report: &RunReport| {
        let mut value = serde_json::to_value(report).unwrap();
        for file in value["artifacts"]["files"].as_array_mut().unwrap() {
            file.as_object_mut().unwrap().remove("content_base64");
        }
        steady(value)
    };
    assert_eq!(without_content(&listed_report), without_content(&report));

    // An artifact entry can be given to the next run as it is (here one renamed: a name with
    // a directory is no file name).
    let mut plot = serde_json::to_value(&files[1]).unwrap();
    plot["name"] = json!("plot.png");
    let again = server.post(
        "/api/v1/runs",
        &json!({
            "code": "print(open('result.txt').read(), len(open('plot.png', 'rb').read()))",
            "files": [serde_json::to_value(&files[0]).unwrap(), plot],
        }),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.report().stdout, "b,2,a,1 12\n", "{}", again.body);

    // The original API takes files too, and its answer keeps its shape.
    let compat = server.post(
        "/run",
        &json!({"code": "print(open('in.txt').read())", "files": [{"name": "in.txt", "content": "x"}]}),
    );
    assert_eq!(compat.status, 200, "{}", compat.body);
    assert_eq!(
        super::keys(&compat.json()),
        [
            "duration_ms",
            "exit_code",
            "output",
            "status",
            "stderr",
            "stdout"
        ]
    );
    assert_eq!(compat.json()["output"], "x\n");
    server.stop_and_assert_clean(&session);
}

/// Bad files are refused with a clear 4xx before anything runs (no container is started: the
/// server has no warm pool, and the audit log says nothing ran).
#[test]
fn bad_files_are_refused_before_anything_runs() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0", "--pool", "0"]);
    let refused = |files: Value| -> Reply {
        let reply = server.post("/api/v1/runs", &json!({"code": "print(1)", "files": files}));
        assert!(session.containers().is_empty(), "a container started");
        reply
    };
    let error = |reply: &Reply| reply.json()["error"].as_str().unwrap().to_owned();

    let many: Vec<Value> = (0..33)
        .map(|index| json!({"name": format!("f{index}.txt"), "content": ""}))
        .collect();
    let reply = refused(Value::Array(many));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        error(&reply),
        "too many files: 33 given, at most 32 can be placed beside a program"
    );

    let big = base64(&vec![b'x'; 8 * 1024 * 1024 + 1]);
    let reply = refused(json!([{"name": "big.bin", "content_base64": big}]));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        error(&reply).starts_with("files too large"),
        "{}",
        reply.body
    );

    for name in ["../x", "/etc/passwd", ".env", "out", "a/b", "main.py", ""] {
        let reply = refused(json!([{"name": name, "content": "x"}]));
        assert_eq!(reply.status, 400, "{name:?}: {}", reply.body);
        assert!(error(&reply).starts_with("files[0]: "), "{}", reply.body);
    }
    assert!(error(&refused(json!([{"name": "../x", "content": "x"}])))
        .contains("`../x` is not a usable file name"));

    let reply = refused(json!([{"name": "junk.bin", "content_base64": "\u{1}\u{ff}not base64!"}]));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        error(&reply),
        "files[0]: 'content_base64' must be a string of standard base64 (with padding)"
    );
    let reply = refused(json!([
        {"name": "a.txt", "content": "1"},
        {"name": "a.txt", "content": "2"}
    ]));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        error(&reply).starts_with("files[1]: another file"),
        "{}",
        reply.body
    );
    let reply = refused(json!("data.csv"));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(error(&reply).contains("must be an array"), "{}", reply.body);

    // A body too large even for the files' room is refused as a body (just past the limit: a
    // body declared far past it is answered without being read, and the client may not see
    // the answer).
    let huge = base64(&vec![0u8; 9_530_000]);
    let reply = refused(json!([{"name": "huge.bin", "content_base64": huge}]));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        error(&reply).starts_with("Request body too large"),
        "{}",
        reply.body
    );
    server.stop_and_assert_clean(&session);
}

/// A program that prints, sleeps a second and prints again: the first line arrives as an event
/// while the program still runs (a second before the result), and the result event is the
/// report the answer without events gives (durations aside). Every byte comes through: text
/// split inside a character, bytes that are not UTF-8, both streams.
#[test]
fn live_output_arrives_while_the_program_runs() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let code = "import sys, time\n\
                print('first', flush=True)\n\
                time.sleep(1)\n\
                sys.stdout.buffer.write('é'.encode()[:1]); sys.stdout.flush()\n\
                time.sleep(0.2)\n\
                sys.stdout.buffer.write('é'.encode()[1:] + b'\\n'); sys.stdout.flush()\n\
                time.sleep(0.2)\n\
                sys.stdout.buffer.write(b'\\xff\\x00end\\n'); sys.stdout.flush()\n\
                print('to stderr', file=sys.stderr)\n\
                open('out/a.txt', 'w').write('artifact')\n";
    let body = json!({"code": code, "artifact_content": true});
    let (status, content_type, events) = post_events(&server, &body);
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    // When the first line was complete (`print` may write it in two pieces).
    let first = events
        .iter()
        .enumerate()
        .find(|(index, _)| joined(&events[..=*index], "stdout") == b"first\n")
        .map(|(_, event)| event)
        .expect("the first line as events of its own");
    let results: Vec<&Event> = events.iter().filter(|e| e.name == "result").collect();
    assert_eq!(results.len(), 1, "{events:#?}");
    let result = results[0];
    assert_eq!(
        events.last().unwrap().name,
        "result",
        "the result comes last"
    );
    let ahead = result.at.duration_since(first.at);
    assert!(
        ahead >= Duration::from_millis(800),
        "the first line came only {ahead:?} before the result"
    );
    // The character cut between two writes is held back, never shown broken.
    assert!(
        events
            .iter()
            .all(|event| !event.data.to_string().contains('\u{fffd}')),
        "{events:#?}"
    );
    let report: RunReport = serde_json::from_value(result.data.clone()).unwrap();
    assert_eq!(report.status, Status::Ok);
    assert_eq!(joined(&events, "stdout"), report.stdout_bytes());
    assert_eq!(joined(&events, "stdout"), b"first\n\xc3\xa9\n\xff\x00end\n");
    assert_eq!(joined(&events, "stderr"), b"to stderr\n");
    assert_eq!(
        unbase64(report.artifacts.files[0].content_base64.as_ref().unwrap()),
        b"artifact"
    );

    let plain = server.post("/api/v1/runs", &body);
    assert_eq!(plain.status, 200);
    assert_eq!(steady(result.data.clone()), steady(plain.json()));

    // Refusals before the run are the ordinary answers, whatever Accept says.
    let (status, content_type, events) = post_events(&server, &json!({"code": ""}));
    assert_eq!((status, content_type.as_str()), (400, "application/json"));
    assert_eq!(events[0].data["status"], "rejected");
    let (status, _, events) = post_events(&server, &json!({"code": "1", "files": 1}));
    assert_eq!(status, 400);
    assert_eq!(events[0].data["status"], "error");
    // The original API never streams.
    let compat = server
        .agent
        .post(&server.url("/run"))
        .set("Content-Type", "application/json")
        .set("Accept", "text/event-stream")
        .send_string(&json!({"code": "print(1)"}).to_string())
        .unwrap();
    assert_eq!(compat.header("Content-Type"), Some("application/json"));
    server.stop_and_assert_clean(&session);
}

/// A streamed run is cancelled when its client goes away, as any run is: the container goes
/// at once, not when the program would have ended.
#[test]
fn a_client_that_leaves_an_event_stream_cancels_its_run() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0", "--pool", "0"]);
    let response = server
        .agent
        .post(&server.url("/api/v1/runs"))
        .set("Content-Type", "application/json")
        .set("Accept", "text/event-stream")
        .send_string(
            &json!({"code": "import time\nprint('up', flush=True)\ntime.sleep(60)"}).to_string(),
        )
        .unwrap();
    let mut lines = BufReader::new(response.into_reader()).lines();
    let mut seen = String::new();
    while !seen.contains("up") {
        let line = lines.next().expect("an event").unwrap();
        seen.push_str(&line);
    }
    assert!(!session.containers().is_empty());
    drop(lines);
    session.assert_clean_within(Duration::from_secs(10));
    server.stop_and_assert_clean(&session);
}
