#!/usr/bin/env bash
# Optional engines and runtimes for safe-exec, called by scripts/setup.sh (or run alone, as root,
# once the Docker engine is up). Idempotent: what is already done is skipped.
#
# Environment:
#   SAFE_EXEC_RUNSC=1    install Debian's runsc (gVisor) and register it with the Docker engine as
#                        the runtime `runsc`, with --network=none; dockerd reloads its runtimes on
#                        SIGHUP, so running containers are not disturbed
#   SAFE_EXEC_PODMAN=1   install Debian's podman and copy the runner image into its store
set -euo pipefail

IMAGE=${SAFE_EXEC_IMAGE:-safe-exec-python:3.11}
DAEMON_JSON=${SAFE_EXEC_DAEMON_JSON:-/etc/docker/daemon.json}

step() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}
apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$@" >/dev/null
}

if [[ ${SAFE_EXEC_RUNSC:-0} == 1 ]]; then
    if ! command -v runsc >/dev/null; then
        step "installing runsc (gVisor) with apt"
        apt_install runsc
    fi
    runsc_path=$(command -v runsc)
    # Merge into an existing daemon.json: only runtimes.runsc is written; every other key stays.
    changed=$(
        python3 - "$DAEMON_JSON" "$runsc_path" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read()
    config = json.loads(text) if text.strip() else {}
except FileNotFoundError:
    config = {}
wanted = {"path": runsc, "runtimeArgs": ["--network=none"]}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") == wanted:
    print("unchanged")
    sys.exit(0)
runtimes["runsc"] = wanted
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = path + ".safe-exec.tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print("changed")
PY
    ) || die "cannot update $DAEMON_JSON (is it valid JSON?)"
    if [[ $changed == changed ]]; then
        step "registered runsc in $DAEMON_JSON; asking dockerd to reload it (SIGHUP)"
        pid=$(cat /var/run/docker.pid 2>/dev/null || true)
        [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || die "dockerd is not running (no /var/run/docker.pid): start it, then run this again"
        kill -HUP "$pid"
    fi
    deadline=$((SECONDS + 15))
    until docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | grep -qw runsc; do
        ((SECONDS < deadline)) || die "dockerd did not pick up the runsc runtime (see its log)"
        sleep 0.5
    done
    step "runtime runsc available ($(runsc --version 2>/dev/null | head -n1))"
fi

if [[ ${SAFE_EXEC_PODMAN:-0} == 1 ]]; then
    if ! command -v podman >/dev/null; then
        step "installing podman with apt"
        apt_install podman
    fi
    # The image carries its content hash as a label; copy it over when podman's differs.
    want=$(docker image inspect --format '{{ index .Config.Labels "safe-exec.context" }}' "$IMAGE" 2>/dev/null) ||
        die "$IMAGE is not in the Docker engine: build it first (scripts/setup.sh)"
    have=$(podman image inspect --format '{{ index .Config.Labels "safe-exec.context" }}' "$IMAGE" 2>/dev/null || true)
    if [[ -n $want && $want == "$have" ]]; then
        step "podman has $IMAGE up to date"
    else
        step "copying $IMAGE into podman's store (docker save | podman load)"
        docker save "$IMAGE" | podman load -q >/dev/null
        step "podman has $IMAGE ($(podman --version))"
    fi
fi
