#!/usr/bin/env bash
# Everything CI checks, in order; stops at the first failure with a non-zero
# exit. Needs root on Debian/Ubuntu: setup.sh installs and starts the Docker
# engine and builds the runner image the integration tests use.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# gVisor too (Debian's runsc, registered with the engine without a restart): the hostile cases
# run under it below. SAFE_EXEC_RUNSC=0 leaves it out. And the data-science image: the plot tests
# (the web page, the MCP client) draw with matplotlib. SAFE_EXEC_DS=0 leaves it out.
SAFE_EXEC_RUNSC=${SAFE_EXEC_RUNSC:-1} SAFE_EXEC_DS=${SAFE_EXEC_DS:-1} bash scripts/setup.sh

# tests/engines/ start Docker engines of their own with TLS certificates made by openssl.
if ! command -v openssl >/dev/null; then
    echo "test: installing openssl with apt (certificates for the test engines)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends openssl >/dev/null
fi

# The web page test drives Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "test: installing chromium and chromium-driver with apt (for the web page test)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends chromium chromium-driver >/dev/null
fi

# The JUnit report is validated against junit-10.xsd with xmllint.
if ! command -v xmllint >/dev/null; then
    echo "test: installing libxml2-utils with apt (xmllint, for the JUnit schema test)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends libxml2-utils >/dev/null
fi

# serve's schemathesis test and mcp's MCP-client tests install schemathesis and the Python MCP
# SDK with pip into virtualenvs (python3 -m venv).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "test: installing python3-venv with apt (for the schemathesis and MCP-client tests)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends python3 python3-venv >/dev/null
fi

echo "test: cargo fmt --all --check"
cargo fmt --all --check

echo "test: cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "test: cargo nextest run --locked --profile ci"
cargo nextest run --locked --profile ci "$@"

# The hostile, supervision, limits and isolation cases again under gVisor, when the engine has it.
# (c2_many_runs is about names, not the runtime: 1000 gVisor runs take minutes.)
if docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | grep -qw runsc; then
    echo "test: the sandbox's cases under gVisor (SAFE_EXEC_TEST_RUNTIME=runsc)"
    SAFE_EXEC_TEST_RUNTIME=runsc cargo nextest run --locked --profile ci \
        -E 'test(/^run::(hostile|limits|isolation|supervision)::/) - test(c2_many_runs)'
fi

echo "test: all checks passed"
