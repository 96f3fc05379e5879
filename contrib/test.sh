#!/usr/bin/env bash
# Run pullstart's tests on a fresh machine: install and start what they need, then `cargo test`.
#
#   contrib/test.sh [CARGO TEST ARGS...]      e.g. contrib/test.sh -- --nocapture
#
# - git: the tests build their repositories with the git CLI (installed with apt-get if missing).
# - Docker: contrib/docker-setup.sh installs and starts a Docker Engine, the Compose v2 plugin and
#   the local test image (idempotent, quick when all is there). PULLSTART_SKIP_DOCKER=1 skips it;
#   the Docker tests then say loudly that they were skipped, and fail instead when CI=true.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v git >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing git" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null
    else
        echo "test.sh: git is required on PATH (the tests build real repositories with it)" >&2
        exit 1
    fi
fi

if [ "${PULLSTART_SKIP_DOCKER:-0}" = 1 ]; then
    echo "test.sh: PULLSTART_SKIP_DOCKER=1: not setting up Docker; the Docker tests will be skipped" >&2
else
    bash contrib/docker-setup.sh
fi

# lighttpd, openssh-server and openssl for the https and ssh transport tests (idempotent).
if [ "${PULLSTART_SKIP_SERVERS:-0}" != 1 ]; then
    bash contrib/servers-setup.sh
fi

# The fault-injection tests need the fail points compiled in (a test-only feature).
exec cargo test --locked --no-fail-fast --features failpoints "$@"
