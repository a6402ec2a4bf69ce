// The page: send the code to POST /api/v1/runs as server-sent events (fetch and a stream reader:
// EventSource cannot POST), show stdout and stderr as they arrive, then the run report: status,
// exit code, time, and the files the program left in out/ (images shown, other files as
// download links). Stop aborts the request, which makes the server kill the run; the output
// shown so far stays.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const maxChars = Number(body.dataset.maxCodeChars) || 5000;
  const timeoutSecs = body.dataset.timeoutSecs;
  const memory = body.dataset.memory;
  const maxOutput = body.dataset.maxOutput;

  const EXAMPLES = {
    hello: 'print("Hello, world!")\n',
    loop: "for i in range(5):\n    print(i, i * i)\n",
    stdin: "name = input()\nprint(f\"Hello, {name}!\")\n",
    error: "def divide(a, b):\n    return a / b\n\nprint(divide(1, 0))\n",
    timeout: "print('started', flush=True)\nwhile True:\n    pass\n",
    memory: "chunks = []\nwhile True:\n    chunks.append(bytearray(10_000_000))\n",
    network: "import socket\nsocket.create_connection(('example.com', 80), timeout=3)\n",
    file: "with open('/etc/hacked.txt', 'w') as f:\n    f.write('hacked!')\n",
    live: "import time\nfor i in range(5):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n",
    plot: "# Needs the data-science image (safe-exec serve --image ds).\nimport matplotlib.pyplot as plt\n\nplt.plot([1, 2, 3, 4], [1, 4, 9, 16], marker='o')\nplt.title('Squares')\nplt.show()\n",
  };

  const code = $("code");
  const stdin = $("stdin");
  const runButton = $("run");
  const stopButton = $("stop");
  const tokenBox = $("token-box");
  const token = $("token");
  let controller = null;

  const editor = window.SafeExecEditor.attach(code, $("highlight"), run);

  function countChars() {
    // Code points, as the server counts them (after CRLF becomes LF).
    const chars = [...code.value.replace(/\r\n?/g, "\n")].length;
    const counter = $("char-count");
    counter.textContent = chars + " / " + maxChars + " characters";
    counter.classList.toggle("over", chars > maxChars);
    return chars;
  }
  code.addEventListener("input", countChars);
  countChars();

  $("example").addEventListener("change", (event) => {
    const example = EXAMPLES[event.target.value];
    if (example === undefined) return;
    code.value = example;
    if (event.target.value === "stdin") {
      $("stdin-box").open = true;
      if (!stdin.value) stdin.value = "Ada\n";
    }
    editor.render();
    countChars();
    code.focus();
  });

  const saved = sessionStorage.getItem("safe-exec-token");
  if (saved) {
    token.value = saved;
    tokenBox.hidden = false;
  }

  runButton.addEventListener("click", run);
  stopButton.addEventListener("click", () => controller && controller.abort());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target !== code) {
      event.preventDefault();
      run();
    }
  });

  function setStatus(kind, text) {
    const status = $("status");
    status.className = "status status-" + kind;
    status.textContent = text;
  }

  function setText(id, text) {
    const element = $(id);
    element.textContent = text || "";
    element.hidden = !text;
  }

  // Object URLs of the last run's files, revoked when the next run starts.
  let objectUrls = [];

  function clearResult() {
    $("stdout").textContent = "";
    $("stderr").textContent = "";
    clearArtifacts();
    $("exit-code").textContent = "–";
    $("duration").textContent = "–";
    setText("message", "");
    setText("hint", "");
  }

  // A report's output as text: base64 output (not valid UTF-8) is decoded and shown lossily.
  function decodeOutput(text, encoding) {
    if (encoding !== "base64") return text;
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: false }).decode(bytes) + "\n[binary output shown as text]";
  }

  const STATUS_TEXT = {
    ok: ["ok", "Finished"],
    runtime_error: ["error", "Runtime error"],
    timeout: ["limit", "Time limit exceeded"],
    memory_limit: ["limit", "Memory limit exceeded"],
    output_limit: ["limit", "Output limit exceeded"],
    rejected: ["error", "Rejected"],
    sandbox_error: ["error", "Sandbox unavailable"],
    interrupted: ["error", "Interrupted"],
  };

  // Code that does not compile: Python prints no traceback header, just where and why, and exits
  // 1 before running anything. (Read from stderr, so it is a label only; the status stays
  // runtime_error. A SyntaxError raised while running, by eval say, has a traceback.)
  const COMPILE_ERROR = /^  File "[^"\n]*", line (\d+)\n(?:[^\n]*\n)*?((?:SyntaxError|IndentationError|TabError): [^\n]*)\n?$/;

  function compileError(report) {
    if (report.status !== "runtime_error" || report.exit_code !== 1) return null;
    const match = COMPILE_ERROR.exec(decodeOutput(report.stderr, report.stderr_encoding));
    return match ? { line: match[1], error: match[2] } : null;
  }

  function explain(report) {
    const compile = compileError(report);
    if (compile) {
      return "The code does not compile: " + compile.error + " (line " + compile.line + ").";
    }
    switch (report.status) {
      case "timeout":
        return "The program ran longer than " + timeoutSecs + " s and was stopped. Output up to that point is shown.";
      case "memory_limit":
        return "The program used more than " + memory + " of memory and was killed.";
      case "output_limit": {
        const stream = report.stdout_truncated ? "stdout" : "stderr";
        return "The program wrote more than " + maxOutput + " to " + stream + " and was stopped; the output is cut there.";
      }
      case "runtime_error":
        return report.signal ? "The program was killed by signal " + report.signal + "." : "The program exited with code " + report.exit_code + ".";
      case "ok":
        return "";
      default:
        return report.error || "";
    }
  }

  // Images the page shows inline. SVG never: it is a document that can carry script and links,
  // so it is offered as a download like any other file.
  const INLINE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

  function clearArtifacts() {
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
    $("images").replaceChildren();
    $("downloads").replaceChildren();
    $("artifacts").hidden = true;
  }

  function base64Bytes(text) {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  }

  function humanSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
    return (bytes / 1024 / 1024).toFixed(1) + " MiB";
  }

  // The report's artifacts: images inline (as blob: URLs of the exact bytes), everything else as
  // a download link; a file cut short or left out is said so.
  function showArtifacts(artifacts) {
    if (!artifacts || (!artifacts.files.length && !artifacts.skipped.length)) return;
    for (const file of artifacts.files) {
      const note = file.truncated ? " (cut short)" : "";
      if (file.content_base64 === undefined) continue;
      // Always a download type for files not shown: a browser must never render an HTML or SVG
      // file the program wrote as a page of this origin.
      const inline = INLINE_IMAGES.has(file.media_type) && !file.truncated;
      const type = inline ? file.media_type : "application/octet-stream";
      const url = URL.createObjectURL(new Blob([base64Bytes(file.content_base64)], { type }));
      objectUrls.push(url);
      if (inline) {
        const figure = document.createElement("figure");
        const image = document.createElement("img");
        image.src = url;
        image.alt = file.name;
        const caption = document.createElement("figcaption");
        caption.textContent = "out/" + file.name;
        figure.append(image, caption);
        $("images").append(figure);
      }
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = url;
      link.download = file.name.split("/").pop();
      link.textContent = "out/" + file.name;
      item.append(link, " " + humanSize(file.size) + note);
      $("downloads").append(item);
    }
    for (const skipped of artifacts.skipped) {
      const item = document.createElement("li");
      item.textContent = "out/" + skipped.name + ": not returned (" + skipped.reason + ")";
      $("downloads").append(item);
    }
    if (artifacts.truncated) {
      const item = document.createElement("li");
      item.textContent = "More files were left in out/ than a run returns.";
      $("downloads").append(item);
    }
    $("artifacts").hidden = false;
  }

  function showReport(report, elapsedMs) {
    const [kind, text] = compileError(report)
      ? ["error", "Syntax error"]
      : STATUS_TEXT[report.status] || ["error", report.status];
    setStatus(kind, text);
    $("stdout").textContent = decodeOutput(report.stdout, report.stdout_encoding);
    $("stderr").textContent = decodeOutput(report.stderr, report.stderr_encoding);
    $("exit-code").textContent = report.exit_code === null ? (report.signal ? "signal " + report.signal : "–") : String(report.exit_code);
    $("duration").textContent = report.duration_ms + " ms";
    $("duration").title = "program " + report.duration_ms + " ms; round trip " + Math.round(elapsedMs) + " ms";
    setText("message", explain(report));
    setText("hint", report.hint ? "Hint: " + report.hint : "");
    showArtifacts(report.artifacts);
  }

  // Live output: each event's bytes (text, or base64 for bytes that are not UTF-8) are decoded
  // with one streaming decoder per stream, so a character is never shown cut.
  function liveStreams() {
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    return (name, data) => {
      const bytes = data.base64 !== undefined ? base64Bytes(data.base64) : new TextEncoder().encode(data.text);
      const element = $(name);
      const atBottom = element.scrollHeight - element.scrollTop - element.clientHeight < 4;
      element.textContent += decoders[name].decode(bytes, { stream: true });
      if (atBottom) element.scrollTop = element.scrollHeight;
    };
  }

  // Server-sent events from a fetch body: calls onEvent(name, data) for each event.
  async function readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async function run() {
    if (controller) return;
    clearResult();
    if (countChars() > maxChars) {
      setStatus("error", "Rejected");
      setText("message", "The code is longer than " + maxChars + " characters.");
      return;
    }
    const headers = { "Content-Type": "application/json" };
    if (token.value) {
      headers.Authorization = "Bearer " + token.value;
      sessionStorage.setItem("safe-exec-token", token.value);
    }
    const payload = { code: code.value, artifact_content: true };
    if (stdin.value) payload.stdin = stdin.value;
    headers.Accept = "text/event-stream";
    controller = new AbortController();
    runButton.disabled = true;
    stopButton.disabled = false;
    setStatus("running", "Running…");
    const started = performance.now();
    try {
      const response = await fetch("/api/v1/runs", {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
      if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        const show = liveStreams();
        let report = null;
        await readEvents(response, (name, data) => {
          if (name === "stdout" || name === "stderr") show(name, data);
          else if (name === "result") report = data;
        });
        if (!report) throw new Error("the answer ended before the run's result");
        showReport(report, performance.now() - started);
        return;
      }
      const answer = await response.json().catch(() => ({}));
      const elapsed = performance.now() - started;
      if (answer.schema_version !== undefined) {
        showReport(answer, elapsed);
      } else if (response.status === 401) {
        tokenBox.hidden = false;
        token.focus();
        setStatus("error", "Token required");
        setText("message", answer.error || "This server requires a token.");
      } else {
        const retry = response.headers.get("Retry-After");
        setStatus("error", response.status === 429 ? "Too many requests" : response.status === 503 ? "Busy" : "Error " + response.status);
        setText("message", (answer.error || response.statusText) + (retry ? " (retry in " + retry + " s)" : ""));
      }
    } catch (error) {
      if (error.name === "AbortError") {
        // The output shown so far stays.
        setStatus("error", "Stopped");
        setText("message", "The run was stopped; its container was killed. The output above is what it wrote until then.");
      } else {
        setStatus("error", "No answer");
        setText("message", "Could not reach the server: " + error.message);
      }
    } finally {
      controller = null;
      runButton.disabled = false;
      stopButton.disabled = true;
    }
  }
})();
