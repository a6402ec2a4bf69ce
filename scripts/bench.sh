#!/usr/bin/env bash
# Benchmarks for safe-exec run: start-up latency side by side with the naive
# `docker run --rm` the original service used (same hardening flags) and host
# Python as a floor, then safe-exec's own memory and stop time under floods.
# Prints tables; quote medians and ratios from one run of this script.
#
# Needs the engine and image (scripts/setup.sh) and installs hyperfine and GNU
# time from Debian's packages if they are missing. RUNS=N sets the sample size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-30}
IMAGE=safe-exec-python:3.11
BIN=target/release/safe-exec

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
SAFE_EXEC_SKIP_BUILD=1 bash scripts/setup.sh >/dev/null
cargo build --release --locked --quiet

naive="docker run --rm -i --network none --read-only --tmpfs /tmp:rw,nosuid,nodev,noexec,size=16m \
--ipc none --memory 128m --memory-swap 128m --cpus 1 --pids-limit 64 --user 10001:10001 --cap-drop ALL \
--security-opt no-new-privileges --init --log-driver none --pull never $IMAGE python3 -c 'print(1)'"

echo "## Start-up: print(1), $RUNS runs each (quote the median)"
hyperfine --style basic --warmup 3 --runs "$RUNS" \
    --export-markdown /tmp/safe-exec-bench.md --export-json /tmp/safe-exec-bench.json \
    -n "safe-exec run" "$BIN run -c 'print(1)' </dev/null" \
    -n "naive docker run --rm" "$naive </dev/null" \
    -n "host python3 (no sandbox)" "python3 -c 'print(1)'" >/dev/null
python3 - /tmp/safe-exec-bench.json <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
naive = results[1]["median"]
print("| command | median | min | max | median vs naive docker run |")
print("|---|---|---|---|---|")
for r in results:
    print(f"| {r['command']} | {r['median'] * 1000:.0f} ms | {r['min'] * 1000:.0f} ms | {r['max'] * 1000:.0f} ms | {r['median'] / naive:.2f}x |")
PY

echo
echo "## Floods: peak memory of the safe-exec process itself (VmHWM, docker client excluded)"
echo "| case | mode | status | peak RSS of safe-exec | reported duration |"
echo "|---|---|---|---|---|"
# Runs safe-exec in the background and reads its own high-water mark until it exits; GNU time
# would include the docker client, a child of ours.
peak_rss() {
    "$BIN" "$@" >/tmp/safe-exec-flood.out 2>/dev/null &
    local pid=$! peak=0 now
    while kill -0 "$pid" 2>/dev/null; do
        now=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $now ]] && peak=$now
        sleep 0.01
    done
    wait "$pid" || true
    echo "$peak"
}
flood() {
    local label=$1 mode=$2
    shift 2
    local peak status duration
    if [[ $mode == json ]]; then
        peak=$(peak_rss run --json "$@")
        status=$(python3 -c 'import json; print(json.load(open("/tmp/safe-exec-flood.out"))["status"])')
        duration="$(python3 -c 'import json; print(json.load(open("/tmp/safe-exec-flood.out"))["duration_ms"])') ms"
    else
        peak=$(peak_rss run "$@")
        status="$(wc -c </tmp/safe-exec-flood.out) bytes out"
        duration=-
    fi
    echo "| $label | $mode | $status | $((peak / 1024)) MiB | $duration |"
}
stdout_flood=$'while True:\n    print("A" * 1000)'
stderr_flood=$'import sys\nwhile True:\n    sys.stderr.write("E" * 4096)'
big_flood=$'import sys\nwhile True:\n    sys.stdout.write("A" * 65536)'
flood "print(1)" json -c 'print(1)'
flood "stdout flood, 1 MiB cap" json -c "$stdout_flood"
flood "stderr flood, 1 MiB cap" json -c "$stderr_flood"
flood "stdout flood, 1 MiB cap" text -c "$stdout_flood"
flood "stdout flood, 64 MiB cap" text --max-output 64m -c "$big_flood"
flood "stdout flood, 64 MiB cap" json --max-output 64m -c "$big_flood"
