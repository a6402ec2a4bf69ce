//! `src/serve/openapi.json` against the real server: every documented status of every endpoint is
//! produced for real, and its body (and documented headers) must validate against the schema
//! the document gives for it.
//!
//! The check is structural and small: `$ref`, `type` (with OpenAPI 3.0's `nullable`), `enum`,
//! `required`, `properties`, `items`, `minimum`, `anyOf` and `oneOf` — where `oneOf` means exactly one
//! alternative matches, so overlapping alternatives are caught. That is every keyword the
//! document uses; an unknown one fails the test rather than being skipped.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::Duration;

use safe_exec::serve::limits::MAX_CONNECTIONS_PER_CLIENT;
use serde_json::{json, Value};

use super::{connect_from, exchange_from, json_request, RawReply, Reply, Server, TOKEN};
use crate::common::Session;

/// The client that opens connections up to its cap: an address no other request here uses.
const CAPPED: &str = "127.0.0.3";

/// One answer the server gave.
#[derive(Debug)]
struct Sample {
    what: String,
    path: &'static str,
    method: &'static str,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Sample {
    fn from_reply(what: &str, path: &'static str, method: &'static str, reply: &Reply) -> Sample {
        Sample {
            what: what.to_owned(),
            path,
            method,
            status: reply.status,
            headers: reply.headers.clone(),
            body: serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        }
    }

    fn from_raw(what: &str, path: &'static str, method: &'static str, raw: &RawReply) -> Sample {
        let headers = raw
            .head
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_owned(), value.trim().to_owned()))
            })
            .collect();
        Sample {
            what: what.to_owned(),
            path,
            method,
            status: raw.status,
            headers,
            body: serde_json::from_str(&raw.body).unwrap_or(Value::Null),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve/openapi.json"),
        )
        .unwrap();
        Spec(serde_json::from_str(&text).unwrap())
    }

    /// Follow `$ref`s (local ones, `#/a/b/c`).
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not a local $ref: {reference}"));
            value = self
                .0
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref: {reference}"));
        }
        value
    }

    /// Every (path, method, status) the document describes.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        for (path, operations) in self.0["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                for status in operation["responses"].as_object().unwrap().keys() {
                    all.insert((path.clone(), method.clone(), status.parse().unwrap()));
                }
            }
        }
        all
    }

    fn response(&self, sample: &Sample) -> &Value {
        let response =
            &self.0["paths"][sample.path][sample.method]["responses"][sample.status.to_string()];
        assert!(
            !response.is_null(),
            "{}: {} {} answered {}, which the document does not describe: {}",
            sample.what,
            sample.method,
            sample.path,
            sample.status,
            sample.body
        );
        self.resolve(response)
    }

    /// Validate `value` against `schema`; the reasons it does not fit, empty when it does.
    fn check(&self, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut errors = Vec::new();
        let Some(keywords) = schema.as_object() else {
            return vec![format!("{at}: the schema is not an object: {schema}")];
        };
        for keyword in keywords.keys() {
            assert!(
                [
                    "type",
                    "nullable",
                    "enum",
                    "required",
                    "properties",
                    "items",
                    "minimum",
                    "anyOf",
                    "oneOf",
                    "description",
                    "example",
                ]
                .contains(&keyword.as_str()),
                "{at}: the check does not know the keyword `{keyword}`"
            );
        }
        if value.is_null() && schema["nullable"] == true {
            return errors;
        }
        for (keyword, need) in [("anyOf", None), ("oneOf", Some(1))] {
            let Some(alternatives) = schema.get(keyword).and_then(Value::as_array) else {
                continue;
            };
            let failures: Vec<Vec<String>> = alternatives
                .iter()
                .map(|alternative| self.check(alternative, value, at))
                .collect();
            let matching = failures.iter().filter(|failure| failure.is_empty()).count();
            let fits = match need {
                Some(exactly) => matching == exactly,
                None => matching >= 1,
            };
            if !fits {
                errors.push(format!(
                    "{at}: {matching} of the {keyword} alternatives match ({failures:?})"
                ));
            }
        }
        if let Some(kind) = schema.get("type").and_then(Value::as_str) {
            let fits = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                other => panic!("{at}: unknown type {other}"),
            };
            if !fits {
                errors.push(format!("{at}: {value} is not of type {kind}"));
                return errors;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
            if value.as_f64().is_some_and(|number| number < minimum) {
                errors.push(format!("{at}: {value} is below {minimum}"));
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required {
                let name = name.as_str().unwrap();
                if value.get(name).is_none() {
                    errors.push(format!("{at}: `{name}` is missing"));
                }
            }
        }
        if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
            for (index, element) in elements.iter().enumerate() {
                errors.extend(self.check(items, element, &format!("{at}[{index}]")));
            }
        }
        if let (Some(properties), Some(fields)) = (
            schema.get("properties").and_then(Value::as_object),
            value.as_object(),
        ) {
            for (name, field) in fields {
                if let Some(property) = properties.get(name) {
                    errors.extend(self.check(property, field, &format!("{at}.{name}")));
                }
            }
        }
        errors
    }

    /// The sample's body and documented headers against its documented response.
    fn validate(&self, sample: &Sample) -> Vec<String> {
        let response = self.response(sample);
        let mut errors = Vec::new();
        let at = format!(
            "{} ({} {} {})",
            sample.what, sample.method, sample.path, sample.status
        );
        if let Some(schema) = response.pointer("/content/application~1json/schema") {
            errors.extend(self.check(schema, &sample.body, &at));
        }
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in headers {
                let header = self.resolve(header);
                match sample.header(name) {
                    None => errors.push(format!("{at}: header {name} is missing")),
                    Some(text) => {
                        let schema = &header["schema"];
                        let value = if schema["type"] == "integer" {
                            text.parse::<i64>().map_or(json!(text), Value::from)
                        } else {
                            json!(text)
                        };
                        errors.extend(self.check(schema, &value, &format!("{at} header {name}")));
                    }
                }
            }
        }
        errors
    }
}

#[test]
fn the_check_catches_overlapping_one_of() {
    // The mistake this test exists for: a 408 timeout body of `/run` is both a CompatResult and
    // an Error, so `oneOf` would reject the answer the server really gives.
    let spec = Spec(json!({
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["error", "status"] },
            "Result": { "type": "object", "required": ["output", "status"] },
        }},
    }));
    let body = json!({ "error": "Execution timed out", "status": "error", "output": "" });
    let alternatives = json!([
        { "$ref": "#/components/schemas/Error" },
        { "$ref": "#/components/schemas/Result" },
    ]);
    assert!(!spec
        .check(&json!({ "oneOf": alternatives }), &body, "body")
        .is_empty());
    assert!(spec
        .check(&json!({ "anyOf": alternatives }), &body, "body")
        .is_empty());
    assert!(!spec
        .check(
            &json!({ "anyOf": alternatives }),
            &json!({ "status": "error" }),
            "body"
        )
        .is_empty());
}

/// Send `request` raw and read the answer (the server closes every connection after it).
fn raw(server: &Server, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    RawReply::parse(&String::from_utf8_lossy(&answer))
}

#[test]
fn every_documented_answer_matches_openapi_json() {
    let spec = Spec::load();
    let session = Session::new();
    let mut samples = Vec::new();
    let json_type = Some("application/json");

    // Runs, limits and malformed requests.
    {
        let server = Server::start(
            &session,
            &[
                "--timeout",
                "2",
                "--memory",
                "32m",
                "--max-output",
                "64k",
                "--rate-limit",
                "0",
            ],
        );
        let addr = server.addr;
        // The body timeout takes 10 s: wait for it alongside the rest.
        let body_timeouts: Vec<_> = ["/run", "/api/v1/runs"]
            .into_iter()
            .map(|path| {
                thread::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(60)))
                        .unwrap();
                    stream
                        .write_all(
                            format!(
                                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
                                 application/json\r\nContent-Length: 20\r\n\r\n{{"
                            )
                            .as_bytes(),
                        )
                        .unwrap();
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).unwrap();
                    (path, RawReply::parse(&String::from_utf8_lossy(&answer)))
                })
            })
            .collect();
        let too_long = "#".repeat(5001);
        let runs = [
            ("success", "print(2 + 2)"),
            ("runtime error", "raise ValueError('boom')"),
            (
                "network hint",
                "import socket\nsocket.create_connection(('example.com', 80), timeout=3)",
            ),
            (
                "killed by a signal",
                "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
            ),
            (
                "memory limit",
                "chunks = []\nwhile True:\n    chunks.append(bytearray(10_000_000))",
            ),
            ("output limit", "while True:\n    print('A' * 1000)"),
            (
                "time limit",
                "print('started', flush=True)\nwhile True:\n    pass",
            ),
            ("code too long", too_long.as_str()),
            ("empty code", "  "),
        ];
        // Artifacts, with their bytes.
        samples.push(Sample::from_reply(
            "artifacts",
            "/api/v1/runs",
            "post",
            &server.post(
                "/api/v1/runs",
                &json!({
                    "code": "open('out/a.txt', 'w').write(open('in.txt').read())",
                    "files": [{"name": "in.txt", "content_base64": "aGk="}],
                    "artifact_content": true
                }),
            ),
        ));
        for (what, code) in runs {
            let body = json!({ "code": code });
            samples.push(Sample::from_reply(
                what,
                "/run",
                "post",
                &server.post("/run", &body),
            ));
            samples.push(Sample::from_reply(
                what,
                "/api/v1/runs",
                "post",
                &server.post("/api/v1/runs", &body),
            ));
        }
        // Past the body limit: room for the code, for 1 MiB of stdin and 8 MiB of files as
        // base64.
        let big = json!({ "code": "#".repeat(13_000_000) }).to_string();
        let bad_file =
            json!({ "code": "print(1)", "files": [{"name": "../x", "content": ""}] }).to_string();
        let big_files = json!({ "code": "print(1)", "files": [
            {"name": "big.bin", "content": "x".repeat(9 * 1024 * 1024)}
        ] })
        .to_string();
        let big_stdin =
            json!({ "code": "print(1)", "stdin": "x".repeat(1024 * 1024 + 1) }).to_string();
        let over_limit =
            json!({ "code": "print(1)", "limits": { "timeout_secs": 11 } }).to_string();
        for path in ["/run", "/api/v1/runs"] {
            let malformed = [
                ("no code", json_type, b"{}".to_vec()),
                ("bad JSON", json_type, b"{".to_vec()),
                (
                    "wrong content type",
                    Some("text/plain"),
                    b"print(1)".to_vec(),
                ),
                ("body too large", json_type, big.clone().into_bytes()),
                ("stdin too large", json_type, big_stdin.clone().into_bytes()),
                ("a file refused", json_type, bad_file.clone().into_bytes()),
                ("files too large", json_type, big_files.clone().into_bytes()),
                (
                    "a limit above the server's",
                    json_type,
                    over_limit.clone().into_bytes(),
                ),
            ];
            for (what, content_type, body) in malformed {
                let reply = server.post_raw(path, content_type, &body, None);
                samples.push(Sample::from_reply(what, path, "post", &reply));
            }
        }
        samples.push(Sample::from_reply(
            "ready",
            "/healthz",
            "get",
            &server.get("/healthz"),
        ));
        samples.push(Sample::from_reply(
            "the document",
            "/openapi.json",
            "get",
            &server.get("/openapi.json"),
        ));
        for timeout in body_timeouts {
            let (path, reply) = timeout.join().unwrap();
            samples.push(Sample::from_raw("body timeout", path, "post", &reply));
        }
        // Past the per-client connection cap, any path gets the Error shape. From an address of
        // its own: a task still finishing one of the requests above would hold one of the
        // 127.0.0.1 places, and the last idle connection would be refused instead.
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS_PER_CLIENT)
            .map(|_| connect_from(CAPPED, addr, None))
            .collect();
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        for path in ["/healthz", "/openapi.json"] {
            let refused = exchange_from(CAPPED, addr, get(path).as_bytes());
            samples.push(Sample::from_raw(
                "too many connections",
                path,
                "get",
                &refused,
            ));
        }
        let refused = exchange_from(CAPPED, addr, &json_request(addr, "/run", "{}"));
        samples.push(Sample::from_raw(
            "too many connections",
            "/run",
            "post",
            &refused,
        ));
        drop(idle);
    }

    // Token; Host check and rate limit.
    {
        let server = Server::start_with(&session, &["--rate-limit", "0"], |command| {
            command.env("SAFE_EXEC_TOKEN", TOKEN);
        });
        for path in ["/run", "/api/v1/runs"] {
            let reply = server.post_raw(path, json_type, br#"{"code": "print(1)"}"#, None);
            samples.push(Sample::from_reply("no token", path, "post", &reply));
        }
        let open = Server::start(&session, &["--rate-limit", "1"]);
        // The Host check comes first and does not count against the rate.
        for path in ["/run", "/api/v1/runs"] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: rebound.example\r\nContent-Type: \
                 application/json\r\nContent-Length: 2\r\n\r\n{{}}"
            );
            let reply = raw(&open, request.as_bytes());
            samples.push(Sample::from_raw("foreign Host", path, "post", &reply));
        }
        assert_eq!(open.post("/run", &json!({})).status, 400);
        for path in ["/run", "/api/v1/runs"] {
            let reply = open.post(path, &json!({ "code": "print(1)" }));
            samples.push(Sample::from_reply("over the rate", path, "post", &reply));
        }
    }

    // The engine is unavailable.
    {
        let server = Server::start_with(&session, &[], |command| {
            command.env("DOCKER_HOST", "unix:///nonexistent.sock");
        });
        for path in ["/run", "/api/v1/runs"] {
            let reply = server.post(path, &json!({ "code": "print(1)" }));
            samples.push(Sample::from_reply(
                "engine unavailable",
                path,
                "post",
                &reply,
            ));
        }
        samples.push(Sample::from_reply(
            "engine unavailable",
            "/healthz",
            "get",
            &server.get("/healthz"),
        ));
    }

    // A full queue, then shutdown with runs in progress.
    {
        // No warm pool: this test tells runs have started by their containers running.
        let mut server = Server::start(
            &session,
            &[
                "--max-concurrent",
                "2",
                "--queue",
                "0",
                "--timeout",
                "60",
                "--pool",
                "0",
            ],
        );
        let server_ref = &server;
        let sleeping = json!({ "code": "import time\ntime.sleep(60)" });
        thread::scope(|scope| {
            let runs: Vec<_> = ["/run", "/api/v1/runs"]
                .into_iter()
                .map(|path| {
                    let server = server_ref;
                    let sleeping = &sleeping;
                    scope.spawn(move || (path, server.post(path, sleeping)))
                })
                .collect();
            server.wait_for(Duration::from_secs(30), "both runs to start", || {
                session.running_containers() == 2
            });
            for path in ["/run", "/api/v1/runs"] {
                let reply = server.post(path, &json!({ "code": "print(1)" }));
                samples.push(Sample::from_reply("queue full", path, "post", &reply));
            }
            server.signal("TERM");
            for run in runs {
                let (path, reply) = run.join().unwrap();
                samples.push(Sample::from_reply(
                    "cancelled by shutdown",
                    path,
                    "post",
                    &reply,
                ));
            }
        });
        assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    }
    session.assert_clean_within(Duration::from_secs(10));

    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for sample in &samples {
        errors.extend(spec.validate(sample));
        seen.insert((
            sample.path.to_owned(),
            sample.method.to_owned(),
            sample.status,
        ));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let missing: Vec<_> = spec.documented().difference(&seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented but never produced: {missing:?}"
    );
}
