#!/usr/bin/env bash
# Bring up a real Docker Engine for pullstart's tests and CI (Debian 12 bookworm, run as root).
#
#   - docker.io (dockerd 20.10, containerd, runc, docker-init) and Compose v1 (docker-compose 1.29)
#     from bookworm;
#   - the Compose v2 CLI plugin (`docker compose`), taken from Debian trixie's `docker-compose`
#     package with a private apt configuration (the system stays on bookworm);
#   - dockerd started in the background without any bridge, iptables or NAT
#     (services in tests use `network_mode: none`);
#   - a tiny local image pullstart-test/busybox:1 built from Debian's busybox-static
#     (no container registry is reachable, so nothing can be pulled).
#
# Idempotent: every step checks first and is skipped when already done, so a second run takes
# about a second. Needs no stdin. Safe to run while dockerd is already up.
#
# Environment knobs (all optional):
#   PULLSTART_TEST_IMAGE         image name to build            (default pullstart-test/busybox:1)
#   PULLSTART_DOCKERD_LOG        dockerd log file               (default /var/log/pullstart-dockerd.log)
#   PULLSTART_DOCKERD_WAIT       seconds to wait for dockerd    (default 60)
#   PULLSTART_STORAGE_DRIVER     force a storage driver, e.g. vfs (default: dockerd picks, overlay2 on ext4)
#   PULLSTART_SKIP_COMPOSE_V1=1  do not install Compose v1
set -euo pipefail

IMAGE=${PULLSTART_TEST_IMAGE:-pullstart-test/busybox:1}
DOCKERD_LOG=${PULLSTART_DOCKERD_LOG:-/var/log/pullstart-dockerd.log}
DOCKERD_WAIT=${PULLSTART_DOCKERD_WAIT:-60}
STATE_DIR=/var/lib/pullstart-docker-setup
PLUGIN_DIR=/usr/libexec/docker/cli-plugins

export DEBIAN_FRONTEND=noninteractive
# docker-init, dockerd and containerd live in /usr/sbin and /usr/bin; make sure they are found
# even with a trimmed PATH (cron, CI).
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

step() { echo "docker-setup: $*"; }
die() { echo "docker-setup: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
exec </dev/null

# One run at a time (parallel test jobs, several shells on one machine): apt and the start of
# dockerd must not race.
exec 9>/var/lock/pullstart-docker-setup.lock
if ! flock -n 9; then
    step "another docker-setup run is in progress; waiting for it"
    flock -w 600 9 || die "timed out waiting for /var/lock/pullstart-docker-setup.lock"
fi

# ---------------------------------------------------------------------------------------------
# apt helpers
# ---------------------------------------------------------------------------------------------
APT_LOG=$STATE_DIR/apt.log
mkdir -p "$STATE_DIR"
# Run a command with its output going to $APT_LOG; on failure show the log's tail and stop.
quiet() {
    if ! "$@" >>"$APT_LOG" 2>&1; then
        echo "docker-setup: ERROR: '$*' failed; last lines of $APT_LOG:" >&2
        tail -n 30 "$APT_LOG" >&2 || true
        exit 1
    fi
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        step "apt-get update (bookworm)"
        quiet apt-get update
        APT_UPDATED=1
    fi
}

# Keep package maintainer scripts from starting services (docker.io's postinst would otherwise
# try to start a dockerd with the default docker0 bridge and iptables rules).
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
block_service_start() {
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
}
unblock_service_start() {
    if [ "$POLICY_RC_OURS" = 1 ]; then
        rm -f "$POLICY_RC"
        POLICY_RC_OURS=0
    fi
}
trap unblock_service_start EXIT

apt_install() {
    apt_update_once
    block_service_start
    quiet apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$@"
    unblock_service_start
}

pkg_installed() {
    [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# ---------------------------------------------------------------------------------------------
# 1. Docker Engine (and Compose v1) from bookworm
# ---------------------------------------------------------------------------------------------
want=()
pkg_installed docker.io || want+=(docker.io)
if [ "${PULLSTART_SKIP_COMPOSE_V1:-0}" != 1 ]; then
    pkg_installed docker-compose || want+=(docker-compose)
fi
if [ "${#want[@]}" -gt 0 ]; then
    step "installing ${want[*]} from bookworm"
    # docker.io recommends apparmor, cgroupfs-mount, git, xz-utils...: none are needed here.
    apt_install "${want[@]}"
else
    step "docker.io and docker-compose (v1) already installed"
fi
command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"

# ---------------------------------------------------------------------------------------------
# 2. Compose v2 plugin from trixie's docker-compose package
# ---------------------------------------------------------------------------------------------
# Print "URI SIGNED_BY" of the first enabled Debian source for the system's own suite
# (deb822 .sources files and one-line .list files are both read). SIGNED_BY may be "-".
find_debian_mirror() {
    local codename=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v want="$codename" '
            function flush() {
                if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && uris != "") {
                    n = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (s[i] == want) {
                        split(uris, u, /[ \t]+/)
                        print u[1], (signed == "" ? "-" : signed)
                        found = 1; exit
                    }
                }
                types = ""; uris = ""; suites = ""; signed = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[^ \t]/ {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "signed-by") signed = (val ~ /^\// ? val : "")
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }
        ' "$f" | head -n1 | grep . && return 0
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v want="$codename" '
            $1 != "deb" { next }
            {
                signed = "-"; i = 2
                if ($2 ~ /^\[/) {
                    for (; i <= NF; i++) {
                        if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                        if ($i ~ /\]$/) { i++; break }
                    }
                }
                if ($(i + 1) == want) { print $i, signed; exit }
            }
        ' "$f" | head -n1 | grep . && return 0
    done
    return 1
}

install_compose_v2() {
    local codename mirror signed tdir work deb bin
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "cannot tell the Debian codename from /etc/os-release"
    read -r mirror signed < <(find_debian_mirror "$codename") ||
        die "no Debian source for '$codename' found in /etc/apt/sources.list*; cannot derive a trixie mirror"
    step "installing the Compose v2 plugin from trixie's docker-compose (mirror $mirror)"

    tdir=$STATE_DIR/trixie-apt
    mkdir -p "$tdir/lists/partial" "$tdir/cache/archives/partial" "$tdir/sources.list.d"
    if [ "$signed" != - ]; then
        echo "deb [signed-by=$signed] $mirror trixie main" >"$tdir/sources.list"
    else
        echo "deb $mirror trixie main" >"$tdir/sources.list"
    fi
    local -a aptopts=(
        -o "Dir::Etc::SourceList=$tdir/sources.list"
        -o "Dir::Etc::SourceParts=$tdir/sources.list.d"
        -o "Dir::State::Lists=$tdir/lists"
        -o "Dir::Cache=$tdir/cache"
        -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache="
        -o "APT::Architectures::=$(dpkg --print-architecture)"
        -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
    )
    quiet apt-get "${aptopts[@]}" update

    work=$(mktemp -d)
    chmod 755 "$work" # apt's _apt sandbox user writes the download here
    (cd "$work" && quiet apt-get "${aptopts[@]}" download docker-compose)
    deb=$(ls "$work"/docker-compose_*.deb)
    mkdir "$work/x"
    dpkg -x "$deb" "$work/x"
    bin=$(find "$work/x" -path '*/cli-plugins/docker-compose' -type f | head -n1)
    [ -n "$bin" ] || die "no cli-plugins/docker-compose in $(basename "$deb")"
    mkdir -p "$PLUGIN_DIR"
    install -m 755 "$bin" "$PLUGIN_DIR/docker-compose"
    rm -rf "$work" "$tdir" # the trixie package lists are not needed any more
}

if docker compose version >/dev/null 2>&1; then
    step "Compose v2 plugin present ($(docker compose version --short 2>/dev/null || echo '?'))"
else
    install_compose_v2
    docker compose version >/dev/null 2>&1 || die "'docker compose version' still fails after installing the plugin"
    step "Compose v2 plugin installed ($(docker compose version --short))"
fi

# ---------------------------------------------------------------------------------------------
# 3. dockerd in the background
# ---------------------------------------------------------------------------------------------
docker_up() { timeout 10 docker info >/dev/null 2>&1; }
# A live (not zombie) process with this exact name? PID 1 of this sandbox reaps orphans slowly, so
# a killed dockerd can linger as <defunct> for a while; plain `pgrep -x` would count it.
# shellcheck disable=SC2009 # pgrep cannot leave zombies out portably
proc_alive() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }

if docker_up; then
    step "dockerd already answering"
else
    if proc_alive dockerd; then
        step "dockerd process exists but does not answer yet; waiting"
    else
        # /run is not a tmpfs on this kind of machine: pid files of a dockerd/containerd that was
        # killed (end of a session) survive, and dockerd refuses to start if their pid has been
        # reused by another process. Nothing of ours is running, so they are stale.
        rm -f /var/run/docker.pid
        proc_alive containerd || rm -f /var/run/docker/containerd/containerd.pid
        # Old cgroupfs-style mounts are already present on this kind of machine (cgroup v1 +
        # unified); only mount a cgroup v2 tree if nothing at all is mounted there.
        if ! mountpoint -q /sys/fs/cgroup; then
            mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true
        fi
        mkdir -p "$(dirname "$DOCKERD_LOG")"
        dockerd_args=(--bridge=none --iptables=false --ip-masq=false --ip6tables=false)
        if [ -n "${PULLSTART_STORAGE_DRIVER:-}" ]; then
            dockerd_args+=(--storage-driver="$PULLSTART_STORAGE_DRIVER")
        fi
        step "starting dockerd ${dockerd_args[*]} (log: $DOCKERD_LOG)"
        # Detach completely (own session, no inherited stdio, not holding our lock on fd 9) so
        # that a CI runner waiting for the script's output to close is not kept waiting by the
        # daemon, and the next run of this script gets the lock.
        setsid dockerd "${dockerd_args[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
        disown || true
    fi
    for ((i = 0; i < DOCKERD_WAIT; i++)); do
        docker_up && break
        if ! proc_alive dockerd; then
            echo "docker-setup: dockerd exited; last lines of $DOCKERD_LOG:" >&2
            tail -n 40 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 1
    done
    if ! docker_up; then
        echo "docker-setup: dockerd did not answer within ${DOCKERD_WAIT}s; last lines of $DOCKERD_LOG:" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    step "dockerd up after ${i}s"
fi
step "engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), client $(docker version --format '{{.Client.Version}}'), storage $(docker info --format '{{.Driver}}'), cgroup $(docker info --format '{{.CgroupDriver}} v{{.CgroupVersion}}')"

# ---------------------------------------------------------------------------------------------
# 4. Test image made from busybox-static
# ---------------------------------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    step "image $IMAGE present"
else
    step "building image $IMAGE from busybox-static"
    work=$(mktemp -d)
    chmod 755 "$work"
    if ! (cd "$work" && apt-get download busybox-static >>"$APT_LOG" 2>&1); then
        apt_update_once
        (cd "$work" && quiet apt-get download busybox-static)
    fi
    dpkg -x "$work"/busybox-static_*.deb "$work/x"
    root=$work/root
    mkdir -p "$root"/{bin,etc,tmp,app,proc,sys,dev,root}
    chmod 1777 "$root/tmp"
    install -m 755 "$work/x/bin/busybox" "$root/bin/busybox"
    # A link for every applet (sh, cat, sleep, echo, date, ls, env, kill, touch, ...).
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    ln -s bin "$root/sbin"
    mkdir -p "$root/usr"
    ln -s ../bin "$root/usr/bin"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
        docker import \
            --change 'ENV PATH=/bin' \
            --change 'WORKDIR /app' \
            --change 'CMD ["sh"]' \
            --change 'LABEL org.opencontainers.image.title=pullstart-test-busybox' \
            - "$IMAGE" >/dev/null
    rm -rf "$work"
    docker image inspect "$IMAGE" >/dev/null
    step "image $IMAGE imported"
fi

step "ready"
