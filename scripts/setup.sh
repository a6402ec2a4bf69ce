#!/usr/bin/env bash
# Make this machine ready to run safe-exec: a Docker engine, the runner image,
# and the release binary. Safe to run again: every step that is already done
# is skipped. Needs root on Debian or Ubuntu.
#
# Environment:
#   SAFE_EXEC_BASE=IMAGE     build the runner image FROM this local image
#   SAFE_EXEC_SKIP_BUILD=1   do not run `cargo build --release`
#   SAFE_EXEC_PULL_TIMEOUT=N seconds to try pulling python:3.11-slim (default 20)
#   SAFE_EXEC_RUNSC=1        also install gVisor (runsc) and register it with dockerd
#   SAFE_EXEC_PODMAN=1       also install podman and copy the runner image into it
#                            (both in scripts/setup-engines.sh)
set -euo pipefail

IMAGE=safe-exec-python:3.11
OFFICIAL_BASE=python:3.11-slim
OFFLINE_BASE=safe-exec-base:bookworm
DOCKERD_LOG=/var/log/safe-exec-dockerd.log
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONTEXT=$REPO/runner_image

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
*) die "only Debian and Ubuntu are supported; elsewhere install Docker yourself, start it, and build the image with: docker build -t $IMAGE runner_image" ;;
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

# --- runner image ------------------------------------------------------------

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# The image is stale when any file of the build context changed. Paths and
# contents count; modes and times do not (they differ between clones).
context_hash=$(
    cd "$CONTEXT"
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
)

build_offline_base() {
    if image_exists "$OFFLINE_BASE"; then
        step "reusing offline base $OFFLINE_BASE"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        step "installing debootstrap with apt"
        apt_install debootstrap
    fi
    local root
    root=$(mktemp -d /var/tmp/safe-exec-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$root' '$root.log'" EXIT
    step "building offline base $OFFLINE_BASE with debootstrap (about a minute)"
    local started=$SECONDS
    # Debian's default mirror; python3 is bookworm's Python 3.11.
    if ! debootstrap --variant=minbase --include=python3 bookworm "$root" >"$root.log" 2>&1; then
        tail -n 30 "$root.log" >&2
        rm -f "$root.log"
        die "debootstrap failed (last lines above)"
    fi
    rm -f "$root.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$root" -c . |
        docker import \
            --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            - "$OFFLINE_BASE" >/dev/null
    rm -rf "$root"
    trap - EXIT
    step "offline base $OFFLINE_BASE built in $((SECONDS - started)) s"
}

choose_base() {
    if [[ -n ${SAFE_EXEC_BASE:-} ]]; then
        image_exists "$SAFE_EXEC_BASE" || die "SAFE_EXEC_BASE=$SAFE_EXEC_BASE is not a local image (docker images)"
        base=$SAFE_EXEC_BASE
        return
    fi
    if image_exists "$OFFICIAL_BASE"; then
        base=$OFFICIAL_BASE
        return
    fi
    step "trying to pull $OFFICIAL_BASE (at most ${SAFE_EXEC_PULL_TIMEOUT:-20} s)"
    if timeout --kill-after=5 "${SAFE_EXEC_PULL_TIMEOUT:-20}" docker pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
        base=$OFFICIAL_BASE
        return
    fi
    step "no container registry reachable: using an offline Debian base"
    build_offline_base
    base=$OFFLINE_BASE
}

wanted_base=${SAFE_EXEC_BASE:-}
if image_exists "$IMAGE" &&
    [[ $(image_label "$IMAGE" safe-exec.context) == "$context_hash" ]] &&
    [[ -z $wanted_base || $(image_label "$IMAGE" safe-exec.base) == "$wanted_base" ]]; then
    step "runner image $IMAGE up to date (base $(image_label "$IMAGE" safe-exec.base))"
else
    if image_exists "$IMAGE"; then
        step "runner image $IMAGE is stale: rebuilding"
    fi
    base=""
    choose_base
    step "building runner image $IMAGE from $base"
    # The classic builder works with every engine version (Debian's docker.io
    # has no buildx) and never pulls a base that is already local. Its output,
    # deprecation notice included, is shown only when the build fails.
    build_log=$(mktemp)
    if ! DOCKER_BUILDKIT=0 docker build \
        --build-arg "BASE=$base" \
        --label "safe-exec.context=$context_hash" \
        --label "safe-exec.base=$base" \
        -t "$IMAGE" "$CONTEXT" >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        rm -f "$build_log"
        die "docker build of $IMAGE failed (last lines above); to retry by hand: DOCKER_BUILDKIT=0 docker build --build-arg BASE=$base -t $IMAGE runner_image"
    fi
    rm -f "$build_log"
    docker image prune -f --filter label=safe-exec.context >/dev/null 2>&1 || true
    step "runner image $IMAGE built ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
fi

# The same hardening safe-exec uses, so a broken engine feature shows up here: root with only
# SETUID/SETGID, dropping to another uid as the launcher does.
check=$(
    docker run --rm -i --network none --read-only --tmpfs /tmp:rw,nosuid,nodev,noexec,size=16m,mode=1777 \
        --ipc none --memory 128m --memory-swap 128m --cpus 1 --pids-limit 64 \
        --ulimit nofile=256:256 --ulimit core=0 --user 0:0 --cap-drop ALL --cap-add SETUID --cap-add SETGID \
        --security-opt no-new-privileges --log-driver none --pull never \
        "$IMAGE" python3 -I -S -c 'import os; os.setgroups([]); os.setresgid(1234567, 1234567, 1234567); os.setresuid(1234567, 1234567, 1234567); print("ok", os.getuid())' </dev/null 2>&1
) || die "a hardened test container failed to run: $check"
[[ $check == "ok 1234567" ]] || die "a hardened test container printed '$check' instead of 'ok 1234567'"
step "hardened docker run works"

# --- optional engines and runtimes ----------------------------------------------

if [[ ${SAFE_EXEC_RUNSC:-0} == 1 || ${SAFE_EXEC_PODMAN:-0} == 1 ]]; then
    bash "$REPO/scripts/setup-engines.sh"
fi

# --- safe-exec binary ----------------------------------------------------------

if [[ ${SAFE_EXEC_SKIP_BUILD:-0} == 1 ]]; then
    step "skipping cargo build (SAFE_EXEC_SKIP_BUILD=1)"
else
    command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup"
    step "cargo build --release --locked"
    (cd "$REPO" && cargo build --release --locked --quiet)
    step "ready: $REPO/target/release/safe-exec"
fi
