#!/usr/bin/env python3
"""safe-exec benchmarks, side by side in one run; prints one Markdown table.

Called by scripts/bench.sh (which sets up the engine, the image and the release binary). Every
ratio is taken between measurements made in the same run, interleaved where it matters, so a
machine that gets busier halfway through moves both sides. Only the standard library is used.

Throughput is measured in ROUNDS rounds, each the churn ceiling right before the measure it is
the baseline of; the table gives medians over the rounds (rate and ratio), since one batch of 40
containers on 2 cores varies by several percent from one run to the next.

Environment: RUNS (pairs for the cold ratio, default 30), ROUNDS (default 3), BIN (the binary),
IMAGE.
"""

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("BIN", "target/release/safe-exec")
IMAGE = os.environ.get("IMAGE", "safe-exec-python:3.11")
RUNS = int(os.environ.get("RUNS", "30"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
LABEL = "bench-%d" % os.getpid()
ENV = dict(os.environ, SAFE_EXEC_LABEL=LABEL, SAFE_EXEC_IMAGE=IMAGE)

# The naive hardened `docker run --rm` the original service used: the same limits, non-root, no
# capabilities, and nothing of safe-exec's (no launcher, no report, no removal guarantee).
NAIVE = [
    "docker", "run", "--rm", "-i", "--network", "none", "--read-only",
    "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=16m", "--ipc", "none",
    "--memory", "128m", "--memory-swap", "128m", "--cpus", "1", "--pids-limit", "64",
    "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--init", "--log-driver", "none", "--pull", "never", IMAGE, "python3", "-c", "print(1)",
]

rows = []
# The second table: where a warm run's time goes.
steps = []


def row(measure, value, baseline="", ratio=""):
    rows.append((measure, value, baseline, ratio))
    print("bench: %s: %s %s %s" % (measure, value, baseline, ratio), file=sys.stderr, flush=True)


def ms(seconds):
    return "%.0f ms" % (seconds * 1000)


def timed(command, **kwargs):
    started = time.perf_counter()
    subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=ENV, check=False, **kwargs)
    return time.perf_counter() - started


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def cold():
    """safe-exec run print(1) against the naive docker run, in alternating pairs."""
    ours, naive, ratios = [], [], []
    for _ in range(3):
        timed([BIN, "run", "-c", "print(1)"])
        timed(NAIVE)
    for _ in range(RUNS):
        a = timed([BIN, "run", "-c", "print(1)"])
        b = timed(NAIVE)
        ours.append(a)
        naive.append(b)
        ratios.append(a / b)
    row("cold `safe-exec run -c 'print(1)'` (median of %d pairs)" % RUNS,
        ms(statistics.median(ours)), "naive `docker run --rm`: " + ms(statistics.median(naive)),
        "%.2fx" % statistics.median(ratios))


class Server:
    """`safe-exec serve` on a free loopback port, rate limit off, with a warm pool."""

    def __init__(self, *extra):
        self.process = subprocess.Popen(
            [BIN, "serve", "--addr", "127.0.0.1:0", "--rate-limit", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)
        line = self.process.stderr.readline()
        if "listening on http://" not in line:
            raise SystemExit("bench: serve did not start: " + line)
        address = line.split("listening on http://")[1].split(" ")[0]
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def post(self, path, body):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        started = time.perf_counter()
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        elapsed = time.perf_counter() - started
        connection.close()
        return answer.status, elapsed

    def wait_warm(self, seconds=30):
        until = time.time() + seconds
        while time.time() < until:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            connection.request("GET", "/healthz")
            health = json.loads(connection.getresponse().read())
            connection.close()
            pool = health.get("pool", {})
            if pool.get("ready", 0) >= pool.get("size", 1):
                return
            time.sleep(0.2)

    def settle(self, seconds=30):
        """A full pool, and no other container of ours left (the last run's, being removed)."""
        until = time.time() + seconds
        while time.time() < until:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            connection.request("GET", "/healthz")
            pool = json.loads(connection.getresponse().read()).get("pool", {})
            connection.close()
            ours = subprocess.run(["docker", "ps", "-aq", "--filter", "label=safe-exec.managed=1"],
                                  capture_output=True, text=True).stdout.split()
            if pool.get("ready", 0) >= pool.get("size", 1) and len(ours) <= pool.get("size", 1):
                return
            time.sleep(0.05)

    def peak_rss_kib(self):
        with open("/proc/%d/status" % self.process.pid) as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def serve_latency(server):
    """POST /run at concurrency 1, spaced so the pool keeps up: each request waits for a full
    pool and for the engine to finish removing the last run's container (its churn would
    otherwise share the 2 cores with the program being timed)."""
    times = []
    for _ in range(max(RUNS, 20)):
        server.settle()
        status, elapsed = server.post("/run", {"code": "print('hi')"})
        if status != 200:
            raise SystemExit("bench: /run answered %d" % status)
        times.append(elapsed)
    row("`serve` warm `POST /run {\"code\":\"print('hi')\"}`, concurrency 1",
        "p50 %s, p95 %s" % (ms(percentile(times, 0.5)), ms(percentile(times, 0.95))))


def serve_throughput(server):
    """POST /run at concurrency 8, sustained: requests/s and the median answer time."""
    total = 96
    done = []
    lock = threading.Lock()
    jobs = list(range(total))

    def client():
        while True:
            with lock:
                if not jobs:
                    return
                jobs.pop()
            status, elapsed = server.post("/run", {"code": "print('hi')"})
            with lock:
                done.append((status, elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ok = sum(1 for status, _ in done if status == 200)
    return ok / elapsed, percentile([e for _, e in done], 0.5)


def run_server(server):
    """`safe-exec run --server URL -c 'print(1)'` against the warm server."""
    if b"--server" not in subprocess.run([BIN, "run", "--help"], capture_output=True).stdout:
        return
    server.wait_warm()
    url = "http://%s:%d" % (server.host, server.port)
    check = subprocess.run([BIN, "run", "--server", url, "-c", "print(1)"], stdin=subprocess.DEVNULL,
                           capture_output=True, env=ENV)
    if check.returncode != 0 or check.stdout != b"1\n":
        raise SystemExit("bench: run --server failed: " + check.stderr.decode(errors="replace"))
    times = []
    for _ in range(max(RUNS, 20)):
        server.settle()
        times.append(timed([BIN, "run", "--server", url, "-c", "print(1)"]))
    row("`safe-exec run --server URL -c 'print(1)'`", "p50 " + ms(percentile(times, 0.5)))


def warm_breakdown(server):
    """Where a warm `POST /api/v1/runs` spends its time: the whole answer, the program's own part
    (its report's duration_ms), the attach stream's round trip, a client process's start."""
    totals, programs, cpus = [], [], []
    for _ in range(max(RUNS, 20)):
        server.settle()
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        started = time.perf_counter()
        connection.request("POST", "/api/v1/runs", body=json.dumps({"code": "print('hi')"}),
                           headers={"Content-Type": "application/json"})
        report = json.loads(connection.getresponse().read())
        totals.append(time.perf_counter() - started)
        connection.close()
        programs.append(report["duration_ms"] / 1000)
        cpus.append(report["cpu_time_ms"] / 1000)
    total, program = statistics.median(totals), statistics.median(programs)
    steps.append(("`POST /api/v1/runs` `print('hi')`, warm, end to end", "%.1f ms" % (total * 1000)))
    steps.append(("the program, from its hand-over to its end (`duration_ms`; CPU `cpu_time_ms`)",
                  "%.1f ms (CPU %.1f ms)" % (program * 1000, statistics.median(cpus) * 1000)))
    steps.append(("the rest: HTTP, taking the container, the request in, the frames out, the answer",
                  "%.1f ms" % ((total - program) * 1000)))
    # One byte there and back through a `docker run -i` attach stream: the engine's relay alone.
    echo = subprocess.Popen(
        ["docker", "run", "-i", "--rm", "--network", "none", "--label", "safe-exec.bench=1",
         "--entrypoint", "python3", IMAGE, "-u", "-c",
         "import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n    os.write(1, b)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    echo.stdin.write(b"x")
    echo.stdin.flush()
    echo.stdout.read(1)
    trips = []
    for _ in range(30):
        started = time.perf_counter()
        echo.stdin.write(b"x")
        echo.stdin.flush()
        echo.stdout.read(1)
        trips.append(time.perf_counter() - started)
        time.sleep(0.02)
    echo.stdin.close()
    echo.wait()
    steps.append(("a byte's round trip through a `docker run -i` attach stream",
                  "%.1f ms" % (statistics.median(trips) * 1000)))
    starts = [timed([BIN, "--version"]) for _ in range(20)]
    steps.append(("starting a client process (`safe-exec --version`; `run --server` adds it)",
                  "%.1f ms" % (statistics.median(starts) * 1000)))


def peak_rss_under_load(server):
    """30 clients at once against serve; its own high-water mark."""
    threads = [threading.Thread(target=server.post, args=("/run", {"code": "print('x' * 1000)"}))
               for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row("peak RSS of `serve` with 30 concurrent clients", "%.1f MiB" % (server.peak_rss_kib() / 1024))


def churn_ceiling(count=40, parallel=4):
    """`count` bare hardened docker runs, `parallel` at a time: what the engine can churn."""
    script = " ".join("'%s'" % word.replace("'", "'\\''") for word in NAIVE)
    started = time.perf_counter()
    subprocess.run(["bash", "-c", "seq %d | xargs -P%d -I{} %s >/dev/null" % (count, parallel, script)],
                   stdin=subprocess.DEVNULL, check=False)
    return count / (time.perf_counter() - started)


def grade_throughput():
    """A 40-case suite, --jobs 4, warm: cases/s."""
    suite = tempfile.mkdtemp(prefix="safe-exec-bench-suite-")
    try:
        for case in range(40):
            with open(os.path.join(suite, "%02d.in" % case), "w") as handle:
                handle.write("%d %d\n" % (case, case + 1))
            with open(os.path.join(suite, "%02d.ans" % case), "w") as handle:
                handle.write("%d\n" % (2 * case + 1))
        submission = os.path.join(suite, "..", os.path.basename(suite) + "-sum.py")
        with open(submission, "w") as handle:
            handle.write("a, b = map(int, input().split())\nprint(a + b)\n")
        started = time.perf_counter()
        subprocess.run([BIN, "grade", suite, submission, "--jobs", "4"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, check=False)
        rate = 40 / (time.perf_counter() - started)
        os.unlink(submission)
    finally:
        shutil.rmtree(suite)
    return rate


def against_churn(measure, settle=lambda: None):
    """ROUNDS times: `settle`, the churn ceiling, then `measure` (returns its rate first). The
    medians of the churn, of the rate and of the per-round ratio, and the other values of the
    median round."""
    rounds = []
    for _ in range(ROUNDS):
        settle()
        churn = churn_ceiling()
        result = measure()
        rounds.append((result[0] / churn, churn, result))
        print("bench: round %d: churn ceiling %.2f/s, measured %.2f/s, %.2fx"
              % (len(rounds), churn, result[0], result[0] / churn), file=sys.stderr, flush=True)
    rounds.sort(key=lambda one: one[0])
    ratio, _, result = rounds[len(rounds) // 2]
    churn = statistics.median(one[1] for one in rounds)
    rate = statistics.median(one[2][0] for one in rounds)
    return ratio, churn, rate, result


def main():
    cold()
    ratio, churn, rate, _ = against_churn(lambda: (grade_throughput(),))
    row("churn ceiling: 40 bare `docker run`s, `xargs -P4` (median of %d)" % ROUNDS,
        "%.1f runs/s" % churn)
    row("`grade` 40-case suite, `--jobs 4` (median of %d rounds)" % ROUNDS, "%.1f cases/s" % rate,
        "churn ceiling, same round", "%.2fx" % ratio)
    server = Server("--pool", "4", "--max-concurrent", "8", "--queue", "64")
    try:
        serve_latency(server)
        run_server(server)
        warm_breakdown(server)
        ratio, churn, rate, (_, p50) = against_churn(lambda: serve_throughput(server),
                                                   server.settle)
        row("`serve` `POST /run`, concurrency 8, 96 requests (median of %d rounds)" % ROUNDS,
            "%.1f requests/s (p50 %s)" % (rate, ms(p50)), "churn ceiling, same round",
            "%.2fx" % ratio)
        peak_rss_under_load(server)
    finally:
        server.stop()
    print("| measure | result | baseline | ratio |")
    print("|---|---|---|---|")
    for measure, value, baseline, ratio in rows:
        print("| %s | %s | %s | %s |" % (measure, value, baseline, ratio))
    print()
    print("| where a warm run's time goes (medians) | time |")
    print("|---|---|")
    for step, value in steps:
        print("| %s | %s |" % (step, value))


if __name__ == "__main__":
    main()
