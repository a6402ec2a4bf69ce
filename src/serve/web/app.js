// The page: send the code to POST /api/v1/runs (the run report) and show what happened, with
// stdout, stderr, status and time kept apart. Stop aborts the request, which makes the server
// kill the run.
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

  function clearResult() {
    $("stdout").textContent = "";
    $("stderr").textContent = "";
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
    const payload = { code: code.value };
    if (stdin.value) payload.stdin = stdin.value;
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
        setStatus("error", "Stopped");
        setText("message", "The run was stopped; its container was killed.");
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
