#!/usr/bin/env bash
# Install the servers that the transport tests (tests/integration/transport_remote.rs) start on
# 127.0.0.1 by themselves (Debian 12 bookworm, run as root):
#
#   - lighttpd with mod_cgi, mod_auth and mod_openssl: serves `git http-backend` over http and
#     https with basic auth;
#   - openssh-server: `sshd -D` on a loopback port with a generated host key and deploy key;
#   - openssl (the CLI) and ssh-keygen: the tests make their certificate and keys;
#   - gnupg (gpg, gpgconf, gpg-agent): the signed-commit tests make OpenPGP keys and sign with them;
#   - groff, zsh and fish: the man page is checked with groff and the completions are tried in
#     the shells they are for (tests/integration/manual.rs).
#
# Nothing is started or enabled here: the tests run each server in the foreground, with their
# own configuration, on a free port, and kill it when they end. Idempotent: when everything is
# there it does nothing and takes a few milliseconds. Needs no stdin.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

say() { echo "servers-setup: $*"; }
die() { echo "servers-setup: ERROR: $*" >&2; exit 1; }

have_all() {
    command -v lighttpd >/dev/null 2>&1 &&
        [ -e /usr/lib/lighttpd/mod_openssl.so ] &&
        [ -e /usr/lib/lighttpd/mod_cgi.so ] &&
        command -v sshd >/dev/null 2>&1 &&
        command -v ssh >/dev/null 2>&1 &&
        command -v ssh-keygen >/dev/null 2>&1 &&
        command -v openssl >/dev/null 2>&1 &&
        command -v gpg >/dev/null 2>&1 &&
        command -v gpgconf >/dev/null 2>&1 &&
        command -v gpg-agent >/dev/null 2>&1 &&
        command -v groff >/dev/null 2>&1 &&
        command -v zsh >/dev/null 2>&1 &&
        command -v fish >/dev/null 2>&1 &&
        { [ -x /usr/lib/git-core/git-http-backend ] ||
            [ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]; }
}

if have_all; then
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root to install lighttpd and openssh-server"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found (Debian or Ubuntu expected)"
exec </dev/null

# One run at a time: apt must not race with itself (docker-setup.sh may run beside us).
exec 8>/var/lock/pullstart-servers-setup.lock
flock -w 600 8 || die "timed out waiting for /var/lock/pullstart-servers-setup.lock"
if have_all; then
    exit 0
fi

# Packages must not start their services (no sshd on port 22, no lighttpd on port 80): a
# policy-rc.d that says "no", put there only for the install when there is none.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

LOG=$(mktemp /tmp/pullstart-servers-setup.XXXXXX.log)
apt() {
    if ! apt-get -o DPkg::Lock::Timeout=600 "$@" >>"$LOG" 2>&1; then
        echo "servers-setup: ERROR: 'apt-get $*' failed; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
}

say "installing lighttpd, lighttpd-mod-openssl, openssh-server, openssl, gnupg, groff, zsh, fish (log: $LOG)"
apt update -qq
apt install -y -qq --no-install-recommends \
    lighttpd lighttpd-mod-openssl openssh-server openssh-client openssl gnupg gpg-agent \
    groff-base zsh fish
have_all || die "still missing something after the install (see $LOG)"
rm -f "$LOG"
say "done"
