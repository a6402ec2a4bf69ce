//! The web page in a real headless Chromium, driven through chromedriver's W3C WebDriver HTTP API
//! (plain JSON over HTTP, so ureq is all the client this needs): type code, click Run or press
//! Ctrl+Enter, read stdout, stderr, status and time.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (scripts/setup.sh installs them).
//! Like the engine tests, it fails (never skips) when they are missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Server;
use crate::common::Session;

/// WebDriver's key codes (W3C WebDriver, "Keyboard actions").
const ENTER: &str = "\u{E007}";
const CONTROL: &str = "\u{E009}";
const BACKSPACE: &str = "\u{E003}";
/// Releases the modifier keys pressed earlier in the same key sequence.
const RELEASE: &str = "\u{E000}";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Browser {
    fn start() -> Browser {
        let setup = "install them with `apt-get install -y chromium chromium-driver` (scripts/setup.sh does)";
        let driver_path = find_program(&["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver not found on PATH: {setup}"));
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("chromium not found on PATH: {setup}"));
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", driver_path.display()));
        let profile = tempfile::tempdir().unwrap();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser
                .agent
                .get(&format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|response| response.into_json::<Value>().ok())
                .is_some_and(|status| status["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < until,
                "chromedriver did not become ready on port {port}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--no-first-run",
                        "--no-default-browser-check",
                        "--window-size=1280,900",
                        format!("--user-data-dir={}", browser._profile.path().display()),
                    ]
                }
            }}
        });
        let created = browser.raw("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request(method, &url);
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        };
        let status = response.status();
        let answer: Value = response.into_json().unwrap_or(Value::Null);
        assert!(
            status < 400,
            "WebDriver {method} {path} failed ({status}): {answer}"
        );
        answer["value"].clone()
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, keys: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": keys })),
        );
    }

    fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The exact text content of the element (not the rendered, trimmed text).
    fn text(&self, css: &str) -> String {
        let script = format!("return document.querySelector({}).textContent;", json!(css));
        self.script(&script).as_str().unwrap_or_default().to_owned()
    }

    /// Replace the editor's content by typing, as a user would.
    fn type_code(&self, keys: &str) {
        self.type_into("#code", &format!("{CONTROL}a{RELEASE}{BACKSPACE}"));
        assert_eq!(
            self.script("return document.getElementById('code').value;"),
            ""
        );
        self.type_into("#code", keys);
    }

    /// Wait until the run is over; its status text.
    fn wait_result(&self) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.text("#status");
            if status != "Running…" && status != "Ready" {
                return status;
            }
            assert!(Instant::now() < until, "no result after 60 s");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_web_page_runs_code_in_a_real_browser() {
    let session = Session::new();
    // No warm pool: this test tells a run has started by its container appearing.
    let server = Server::start(
        &session,
        &[
            "--timeout",
            "5",
            "--memory",
            "32m",
            "--max-output",
            "64k",
            "--pool",
            "0",
        ],
    );
    let browser = Browser::start();
    let page = server.url("/");
    browser.goto(&page);
    assert_eq!(
        browser.script("return document.title;"),
        "safe-exec: run Python in a sandbox"
    );
    assert_eq!(browser.text("#char-count"), "22 / 5000 characters");

    // Typed code: Enter keeps the indentation and adds a level after a colon; backspaces dedent.
    let typed = [
        "import sys",
        ENTER,
        "for i in range(2):",
        ENTER,
        "print(i * 21)",
        ENTER,
        BACKSPACE,
        BACKSPACE,
        BACKSPACE,
        BACKSPACE,
        "print('oops', file=sys.stderr)",
        ENTER,
        "print(input().upper())",
    ]
    .concat();
    browser.type_code(&typed);
    assert_eq!(
        browser.script("return document.getElementById('code').value;"),
        "import sys\nfor i in range(2):\n    print(i * 21)\nprint('oops', file=sys.stderr)\nprint(input().upper())"
    );
    let keywords = browser.script(
        "return [...document.querySelectorAll('#highlight .tok-kw')].map(e => e.textContent);",
    );
    assert_eq!(keywords, json!(["import", "for", "in"]));
    let strings = browser.script(
        "return [...document.querySelectorAll('#highlight .tok-str')].map(e => e.textContent);",
    );
    assert_eq!(strings, json!(["'oops'"]));
    browser.click("#stdin-box summary");
    browser.type_into("#stdin", "ada");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Finished");
    assert_eq!(browser.text("#stdout"), "0\n21\nADA\n");
    assert_eq!(browser.text("#stderr"), "oops\n");
    assert_eq!(browser.text("#exit-code"), "0");
    assert!(
        browser.text("#duration").ends_with(" ms"),
        "{}",
        browser.text("#duration")
    );

    // Ctrl+Enter runs; a timeout keeps the partial output and says so.
    browser.type_code(
        &[
            "print('started', flush=True)",
            ENTER,
            "while True:",
            ENTER,
            "pass",
        ]
        .concat(),
    );
    browser.type_into("#code", &format!("{CONTROL}{ENTER}{RELEASE}"));
    assert_eq!(browser.wait_result(), "Time limit exceeded");
    assert_eq!(browser.text("#stdout"), "started\n");
    assert!(
        browser.text("#message").contains("longer than 5 s"),
        "{}",
        browser.text("#message")
    );

    // The examples: memory limit, output limit and a network call, each with its own message.
    browser.click("#example option[value=memory]");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Memory limit exceeded");
    assert!(
        browser.text("#message").contains("32 MiB"),
        "{}",
        browser.text("#message")
    );

    browser.type_code("while True: print('A' * 1000)");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Output limit exceeded");
    assert!(
        browser.text("#message").contains("64 KiB to stdout"),
        "{}",
        browser.text("#message")
    );

    browser.click("#example option[value=network]");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Runtime error");
    assert_eq!(browser.text("#hint"), "Hint: Network access is disabled");
    assert!(browser
        .text("#stderr")
        .contains("Temporary failure in name resolution"));

    // Stop aborts the request; the server kills the run.
    browser.type_code("import time; print('sleeping', flush=True); time.sleep(60)");
    browser.click("#run");
    let until = Instant::now() + Duration::from_secs(30);
    while session.containers().is_empty() {
        assert!(Instant::now() < until, "the run did not start");
        thread::sleep(Duration::from_millis(50));
    }
    browser.click("#stop");
    assert_eq!(browser.wait_result(), "Stopped");
    session.assert_clean_within(Duration::from_secs(10));

    // Everything the page loaded came from the server itself.
    let loaded =
        browser.script("return performance.getEntriesByType('resource').map(e => e.name);");
    let origin = server.url("");
    for url in loaded.as_array().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(&origin),
            "loaded from elsewhere: {url}"
        );
    }
    server.stop_and_assert_clean(&session);
}

/// Chromium resends a request answered 408 when the answer came on a reused keep-alive
/// connection (it takes the 408 for a server closing an idle connection), so a `/run` that hit
/// its time limit used to run several times. Every answer now closes its connection; each click
/// or fetch must be exactly one execution.
#[test]
fn a_timed_out_run_from_the_page_runs_exactly_once() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let server = Server::start(
        &session,
        &[
            "--timeout",
            "1",
            "--rate-limit",
            "0",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let browser = Browser::start();
    browser.goto(&server.url("/"));
    let forever = "print('started', flush=True)\nwhile True:\n    pass";
    // Audit lines come from a writer thread of their own, just after the answer: wait for the
    // expected count, then read it (the final check below catches any line that comes later).
    let executions = |expected: usize| {
        server.wait_for(Duration::from_secs(10), "the audit line", || {
            super::audit_lines(&audit).len() >= expected
        });
        super::audit_lines(&audit).len()
    };

    // The page's own Run button (POST /api/v1/runs: a time limit is a 200 report).
    for click in 1..=2 {
        browser.type_code(
            &[
                "print('started', flush=True)",
                ENTER,
                "while True:",
                ENTER,
                "pass",
            ]
            .concat(),
        );
        browser.click("#run");
        assert_eq!(
            browser.wait_result(),
            "Time limit exceeded",
            "click {click}"
        );
        assert_eq!(browser.text("#stdout"), "started\n");
        assert_eq!(executions(click), click, "click {click}");
    }

    // The original API from the same page: the time limit is a 408, which is what Chromium
    // resends on a reused connection.
    let fetch = format!(
        "const done = arguments[arguments.length - 1];
         fetch('/run', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' }},
                          body: JSON.stringify({{ code: {} }}) }})
           .then(async (r) => done({{ status: r.status, body: await r.json() }}))
           .catch((e) => done({{ status: 0, body: String(e) }}));",
        json!(forever)
    );
    for call in 1..=2 {
        let answer = browser.command(
            "POST",
            "/execute/async",
            Some(json!({ "script": fetch, "args": [] })),
        );
        assert_eq!(answer["status"], 408, "fetch {call}: {answer}");
        assert_eq!(
            answer["body"]["output"], "started\n",
            "fetch {call}: {answer}"
        );
        assert_eq!(executions(2 + call), 2 + call, "fetch {call}");
    }

    // Nothing arrives late either: four requests, four executions.
    thread::sleep(Duration::from_secs(2));
    let lines = super::audit_lines(&audit);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines.iter().all(|line| line["status"] == "timeout"),
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|line| line["endpoint"] == "/run")
            .count(),
        2,
        "{lines:#?}"
    );
    server.stop_and_assert_clean(&session);
}

/// On a phone-sized screen (390 CSS pixels wide, as an iPhone 12-15) the page does not scroll
/// sideways, before or after a run; and code that does not compile is labelled a syntax error
/// with Python's own message, not a runtime error.
#[test]
fn the_page_fits_a_phone_and_names_syntax_errors() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let browser = Browser::start();
    browser.command(
        "POST",
        "/goog/cdp/execute",
        Some(json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": { "width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": true }
        })),
    );
    browser.goto(&server.url("/"));
    let overflow = |when: &str| {
        let sizes = browser.script(
            "const root = document.documentElement;
             const wide = [...document.querySelectorAll('body *')]
               .filter((e) => e.getBoundingClientRect().right > root.clientWidth)
               .map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + e.getBoundingClientRect().right);
             return { scroll: root.scrollWidth, client: root.clientWidth, inner: window.innerWidth, wide };",
        );
        // A phone widens its layout to fit content that overflows, so both must stay at 390.
        assert!(
            sizes["inner"] == 390 && sizes["scroll"] == 390 && sizes["client"] == 390,
            "{when}: the page scrolls sideways: {sizes}"
        );
    };
    overflow("on load");

    browser.type_code("print('a very long line of output that does not fit on a phone screen at all', 1)\nprint(1");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Syntax error");
    let message = browser.text("#message");
    assert!(
        message.contains("SyntaxError: '(' was never closed") && message.contains("line 2"),
        "{message}"
    );
    overflow("after a syntax error");

    // An exception raised while running is still a runtime error, a SyntaxError included.
    browser.type_code("eval('1 +')");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Runtime error");
    browser.type_code("print('x' * 300)");
    browser.click("#run");
    assert_eq!(browser.wait_result(), "Finished");
    overflow("after long output");
    server.stop_and_assert_clean(&session);
}

/// Wait until `condition` holds for the page (checked every 50 ms), at most `within`.
fn wait_until(
    browser: &Browser,
    within: Duration,
    what: &str,
    condition: impl Fn(&Browser) -> bool,
) {
    let until = Instant::now() + within;
    while !condition(browser) {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Output shows as the program writes it: the first line is on the page while the run is still
/// going, a second before the rest. Stop keeps what was shown.
#[test]
fn the_page_shows_output_as_it_comes_and_stop_keeps_it() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let browser = Browser::start();
    browser.goto(&server.url("/"));
    browser.type_code(
        &[
            "import time",
            ENTER,
            "print('first', flush=True)",
            ENTER,
            "time.sleep(2)",
            ENTER,
            "print('second')",
        ]
        .concat(),
    );
    browser.click("#run");
    wait_until(
        &browser,
        Duration::from_secs(30),
        "the first line",
        |browser| browser.text("#stdout") == "first\n",
    );
    let first_seen = Instant::now();
    assert_eq!(browser.text("#status"), "Running…");
    assert_eq!(browser.wait_result(), "Finished");
    let rest = first_seen.elapsed();
    assert!(
        rest >= Duration::from_millis(1500),
        "the first line showed only {rest:?} before the end"
    );
    assert_eq!(browser.text("#stdout"), "first\nsecond\n");

    browser.type_code("import time; print('kept', flush=True); time.sleep(60)");
    browser.click("#run");
    wait_until(&browser, Duration::from_secs(30), "the output", |browser| {
        browser.text("#stdout") == "kept\n"
    });
    browser.click("#stop");
    assert_eq!(browser.wait_result(), "Stopped");
    assert_eq!(browser.text("#stdout"), "kept\n");
    server.stop_and_assert_clean(&session);
}

/// On the data-science image a matplotlib plot comes back and is shown under the output (from a
/// blob: URL the page's Content-Security-Policy allows); an SVG is offered as a download, never
/// shown; the page still fits a phone. Saves a screenshot to target/plot-screenshot.png.
#[test]
fn the_page_shows_a_plot_from_the_data_science_image() {
    let session = Session::new();
    let server = Server::start(
        &session,
        &[
            "--image",
            "ds",
            "--timeout",
            "30",
            "--wall-timeout",
            "120",
            "--rate-limit",
            "0",
        ],
    );
    let browser = Browser::start();
    browser.goto(&server.url("/"));
    browser.click("#example option[value=plot]");
    browser.type_into(
        "#code",
        &format!("{ENTER}plt.savefig('out/squares.svg'){ENTER}"),
    );
    browser.click("#run");
    let status = {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let status = browser.text("#status");
            if status != "Running…" && status != "Ready" {
                break status;
            }
            assert!(Instant::now() < until, "no result after 120 s");
            thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(status, "Finished", "stderr: {}", browser.text("#stderr"));
    wait_until(
        &browser,
        Duration::from_secs(10),
        "the plot to load",
        |browser| {
            browser.script(
                "const images = document.querySelectorAll('#images img');
             return images.length === 1 && images[0].complete && images[0].naturalWidth > 0;",
            ) == true
        },
    );
    let image = browser.script(
        "const image = document.querySelector('#images img');
         return { src: image.src.slice(0, 5), alt: image.alt, width: image.naturalWidth,
                  height: image.naturalHeight,
                  caption: image.parentElement.querySelector('figcaption').textContent };",
    );
    assert_eq!(image["src"], "blob:", "{image}");
    assert_eq!(image["alt"], "figure-1.png", "{image}");
    assert_eq!(image["caption"], "out/figure-1.png", "{image}");
    assert!(image["width"].as_u64().unwrap() >= 320, "{image}");
    let links = browser.script(
        "return [...document.querySelectorAll('#downloads a')].map((a) => [a.textContent, a.download]).sort();",
    );
    assert_eq!(
        links,
        json!([
            ["out/figure-1.png", "figure-1.png"],
            ["out/squares.svg", "squares.svg"]
        ])
    );
    // The SVG is a download, not an image of this page.
    assert_eq!(
        browser.script("return document.querySelectorAll('#images img, #images svg, object, embed, iframe').length;"),
        1
    );
    browser.script("document.getElementById('artifacts').scrollIntoView();");
    let screenshot = browser.command("GET", "/screenshot", None);
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        screenshot.as_str().unwrap(),
    )
    .unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("plot-screenshot.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // On a phone the plot fits the screen.
    browser.command(
        "POST",
        "/goog/cdp/execute",
        Some(json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": { "width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": true }
        })),
    );
    let sizes = browser.script(
        "const root = document.documentElement;
         const image = document.querySelector('#images img').getBoundingClientRect();
         return { scroll: root.scrollWidth, client: root.clientWidth, right: image.right };",
    );
    assert!(
        sizes["scroll"] == 390
            && sizes["client"] == 390
            && sizes["right"].as_f64().unwrap() <= 390.0,
        "the page scrolls sideways with the plot: {sizes}"
    );
    server.stop_and_assert_clean(&session);
}
