#!/usr/bin/env bash
# Make this machine ready to run safe-exec: a Docker engine, the release
# binary, and the runner image (which the binary builds from the context it
# carries: `safe-exec image build`), checked with `safe-exec doctor`. Safe to
# run again: every step that is already done is skipped. Needs root on Debian
# or Ubuntu.
#
# Environment:
#   SAFE_EXEC_IMAGE=NAME     the runner image to build (default safe-exec-python:3.11)
#   SAFE_EXEC_DS=1           also build the data-science image on it (numpy, pandas, matplotlib,
#                            scipy; needs the network for a few minutes the first time)
#   SAFE_EXEC_BASE=IMAGE     build the runner image FROM this local image
#   SAFE_EXEC_SKIP_BUILD=1   do not run `cargo build --release` (use the binary already built)
#   SAFE_EXEC_PULL_TIMEOUT=N seconds to try pulling python:3.11-slim (default 20)
set -euo pipefail

IMAGE=${SAFE_EXEC_IMAGE:-safe-exec-python:3.11}
OFFICIAL_BASE=python:3.11-slim
OFFLINE_BASE=safe-exec-base:bookworm
DOCKERD_LOG=/var/log/safe-exec-dockerd.log
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release/safe-exec

step() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# --- preconditions -----------------------------------------------------------

if [[ $EUID -ne 0 ]]; then
    die "must run as root (it installs packages and starts dockerd): sudo bash scripts/setup.sh"
fi
os_id=""
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    os_id=$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")
fi
case " $os_id " in
*" debian "* | *" ubuntu "*) ;;
*) die "only Debian and Ubuntu are supported; elsewhere install Docker yourself, start it, then: cargo build --release && target/release/safe-exec image build" ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        # Wait for another apt (a background install, unattended-upgrades) rather than fail.
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Docker engine -----------------------------------------------------------

if command -v dockerd >/dev/null; then
    step "docker engine installed ($(dockerd --version))"
else
    step "installing docker.io with apt"
    apt_install docker.io
fi
command -v docker >/dev/null || die "the docker client is missing: apt-get install docker.io"
engine_up() { timeout 15 docker info >/dev/null 2>&1; }

if engine_up; then
    step "docker engine running"
else
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        step "starting docker with systemctl"
        systemctl start docker || true
    fi
    if ! engine_up; then
        step "starting dockerd in the background (log: $DOCKERD_LOG)"
        # A stale pid file from a dead dockerd makes the new one refuse to start.
        if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
            rm -f /var/run/docker.pid
        fi
        # setsid + nohup: the engine outlives this script and its terminal.
        setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        disown || true
    fi
    deadline=$((SECONDS + 60))
    until engine_up || ((SECONDS >= deadline)); do
        sleep 1
    done
    if ! engine_up; then
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd did not come up within 60 s (last lines of $DOCKERD_LOG above)"
    fi
    step "docker engine up ($(docker info --format '{{.ServerVersion}}, {{.Driver}}, cgroup v{{.CgroupVersion}}'))"
fi

# --- safe-exec binary ----------------------------------------------------------

if [[ ${SAFE_EXEC_SKIP_BUILD:-0} == 1 ]]; then
    [[ -x $BIN ]] || die "SAFE_EXEC_SKIP_BUILD=1 but $BIN is missing: build it first with cargo build --release --locked"
    step "skipping cargo build (SAFE_EXEC_SKIP_BUILD=1): using $BIN"
else
    command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup"
    step "cargo build --release --locked"
    (cd "$REPO" && cargo build --release --locked --quiet)
fi

# --- runner image ------------------------------------------------------------

# The binary carries runner_image/ and builds the image itself, skipping it when an image with the
# same context hash is there (see `safe-exec image build --help`). Its offline fallback needs
# debootstrap: install it when that fallback may be needed (no local base to build from yet).
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
if [[ -z ${SAFE_EXEC_BASE:-} ]] && ! command -v debootstrap >/dev/null &&
    ! image_exists "$OFFICIAL_BASE" && ! image_exists "$OFFLINE_BASE"; then
    step "installing debootstrap with apt (for an offline base, should no registry be reachable)"
    apt_install debootstrap
fi
images=("$IMAGE")
if [[ ${SAFE_EXEC_DS:-0} == 1 ]]; then
    "$BIN" image build --tag "$IMAGE" --ds
    images+=(ds)
else
    "$BIN" image build --tag "$IMAGE"
fi

# The same hardening every run gets, checked from inside a probe container, with the engine's
# cgroups and the image's launcher: a broken engine feature shows up here.
for image in "${images[@]}"; do
    if ! report=$("$BIN" doctor --image "$image" 2>&1); then
        printf '%s\n' "$report" >&2
        die "safe-exec doctor found problems with $image (above, each with its fix)"
    fi
    step "safe-exec doctor --image $image: all checks passed"
done
step "ready: $BIN"
