#!/usr/bin/env bash
# pullstart demo: build pullstart, then run a full cycle on a throwaway remote and checkout.
#
#   contrib/demo.sh            KEEP=1 keeps the temporary directory for a look around;
#                              PULLSTART_DEMO_STANDIN=1 uses the compose stand-in even with Docker
#
# It makes, in a temporary directory: a bare remote, a "dev" clone that pushes changes, and a
# "checkout" clone that pullstart keeps up to date. It then shows `status`, `check`, an update,
# a silent no-change run, and a refusal (a local edit in the way, exit 4).
#
# Compose: when a Docker Engine is reachable (`docker info`), `docker compose version` works and
# the image pullstart-test/busybox:1 exists (contrib/docker-setup.sh makes all three), the demo
# runs a real compose project whose services print the bind-mounted checkout's message.txt at
# start. Otherwise a stand-in script prints the compose command pullstart runs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=pullstart-test/busybox:1

if [ -t 1 ]; then bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'; else bold='' dim='' off=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s%s%s\n' "$dim" "$*" "$off"; }

# show CMD...: print and run a command, then its exit code; never stops the demo.
rc=0
show() {
    printf '%s$ %s%s\n' "$bold" "$*" "$off"
    rc=0
    "$@" || rc=$?
    note "(exit code $rc)"
}
# cmd CMD...: print and run a command that must succeed.
cmd() {
    printf '%s$ %s%s\n' "$bold" "$*" "$off"
    "$@"
}
# expect N: stop the demo when the last `show` did not exit N.
expect() {
    if [ "$rc" -ne "$1" ]; then
        echo "demo.sh: expected exit code $1, got $rc" >&2
        exit 1
    fi
}

# --- Which compose: the real engine or the stand-in -------------------------------------------
mode=stand-in
why=
if [ "${PULLSTART_DEMO_STANDIN:-0}" = 1 ]; then
    why="PULLSTART_DEMO_STANDIN=1"
elif ! command -v docker >/dev/null 2>&1; then
    why="docker is not installed"
elif ! docker info >/dev/null 2>&1; then
    why="no Docker Engine is reachable (\`docker info\` failed)"
elif ! docker compose version >/dev/null 2>&1; then
    why="the Compose v2 plugin is missing (\`docker compose version\` failed)"
elif ! docker image inspect "$image" >/dev/null 2>&1; then
    why="the image $image is missing"
else
    mode=docker
fi
if [ "$mode" = docker ]; then
    say "mode: real Docker Engine ($(docker compose version --short 2>/dev/null || echo 'compose v2'))"
    note "the services of a real compose project print the checkout's message.txt when they start"
else
    say "mode: compose stand-in, because $why"
    note "a small script stands in for \`docker compose\` and prints the command pullstart runs;"
    note "run contrib/docker-setup.sh (Debian, as root) and then this demo again to see real containers"
fi

# --- Build -----------------------------------------------------------------------------------
say "building pullstart (cargo build --release)"
(cd "$root" && cargo build --release)
bin="${CARGO_TARGET_DIR:-$root/target}/release/pullstart"
case $bin in /*) ;; *) bin="$root/$bin" ;; esac
pullstart() { "$bin" "$@"; }

# --- A throwaway world -----------------------------------------------------------------------
demo=$(mktemp -d "${TMPDIR:-/tmp}/pullstart-demo.XXXXXX")
project="pullstart-demo-$$"
cleanup() {
    if [ "$mode" = docker ] && [ -d "$demo/checkout" ]; then
        (cd "$demo/checkout" && docker compose -p "$project" down -t 0 >/dev/null 2>&1) || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "demo.sh: kept $demo"
    else
        rm -rf "$demo"
    fi
}
trap cleanup EXIT

# Fixture repositories only: no system or user git config, no caller's GIT_* variables.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES \
    GIT_CEILING_DIRECTORIES GIT_NAMESPACE GIT_CONFIG GIT_CONFIG_PARAMETERS GIT_CONFIG_COUNT
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

say "a bare remote, a dev clone that pushes, and the checkout pullstart keeps up to date (in $demo)"
git init -q --bare -b main "$demo/remote.git"

git init -q -b main "$demo/dev"
cd "$demo/dev"
git config user.name "Demo Dev"
git config user.email dev@example.com
echo "hello from v1" >message.txt
mkdir app
# shellcheck disable=SC2016 # the script's own $(...), expanded when it runs
printf '#!/bin/sh\necho "serving $(cat /app/message.txt)"\n' >app/main.sh
chmod +x app/main.sh
cat >compose.yaml <<'YAML'
# Both services run the code of the checkout, bind-mounted at /app.
services:
  web:
    image: pullstart-test/busybox:1
    pull_policy: never
    network_mode: none
    init: true
    volumes: [".:/app"]
    command: ["sh", "-c", "cat /app/message.txt; exec sleep 1000000"]
  worker:
    image: pullstart-test/busybox:1
    pull_policy: never
    network_mode: none
    init: true
    volumes: [".:/app"]
    command: ["sh", "-c", "cat /app/message.txt; exec sleep 1000000"]
YAML
git add -A
git commit -q -m "v1: first version"
git remote add origin "$demo/remote.git"
git push -q -u origin main

git clone -q "$demo/remote.git" "$demo/checkout"
git -C "$demo/checkout" config user.name "Demo Server"
git -C "$demo/checkout" config user.email server@example.com

# The config file: every flag has a key of the same name (`-` as `_`); flags win over it.
{
    echo "# pullstart settings for the demo checkout"
    echo "project_name: $project"
    echo "services: [web]        # restart only web; worker keeps running what it started with"
} >"$demo/pullstart.yml"
if [ "$mode" = stand-in ]; then
    mkdir "$demo/bin"
    cat >"$demo/bin/compose" <<EOF
#!/usr/bin/env bash
# Stand-in for \`docker compose\`: prints and logs its arguments.
line="compose \$*"
echo "\$line"
echo "\$line" >>"$demo/compose.log"
EOF
    chmod +x "$demo/bin/compose"
    echo "compose_command: $demo/bin/compose" >>"$demo/pullstart.yml"
fi
note "$demo/pullstart.yml:"
sed 's/^/    /' "$demo/pullstart.yml"

compose_logs() {
    if [ "$mode" = docker ]; then
        sleep 1 # let a restarted service print its message
        printf '%s$ docker compose -p %s logs%s\n' "$bold" "$project" "$off"
        # (compose 2.26 emits erase-line codes even with --ansi never: strip them)
        docker compose --ansi never -p "$project" logs --no-color | sed $'s/\e\\[[0-9;]*[A-Za-z]//g'
    elif [ -f "$demo/compose.log" ]; then
        note "what the compose stand-in was asked to do so far:"
        sed 's/^/    /' "$demo/compose.log"
    else
        note "the compose stand-in has not been called yet"
    fi
}

cd "$demo/checkout"
if [ "$mode" = docker ]; then
    say "starting the compose project $project from the checkout"
    docker compose --ansi never -p "$project" up -d
    compose_logs
fi

say "status: nothing pending yet (offline)"
show pullstart status --config ../pullstart.yml
expect 0

say "dev pushes v2: a new message and a new file"
(
    cd "$demo/dev"
    echo "hello from v2" >message.txt
    printf '#!/bin/sh\necho "v2 helper"\n' >app/helper.sh
    chmod +x app/helper.sh
    git add -A
    git commit -q -m "v2: new message, helper script"
    git push -q
)

say "check: fetch and report what a run would do (changes nothing)"
show pullstart check --config ../pullstart.yml
expect 0
note "check updated the remote-tracking ref, so the offline status now sees the pending update:"
show pullstart status --config ../pullstart.yml
expect 0

say "run: fast-forward the checkout and restart web"
show pullstart run --config ../pullstart.yml
expect 0
cmd git log -1 --oneline
cmd git status --short
if [ -n "$(git status --porcelain)" ]; then
    echo "demo.sh: git status is not clean after the run" >&2
    exit 1
fi
note "(git status is clean)"
cmd git rev-parse --short refs/pullstart/deployed
compose_logs
if [ "$mode" = docker ]; then
    note "web restarted and printed the new message; worker was not among the services, so it still runs v1"
fi

say "run again: nothing changed, so nothing is printed (cron mails nothing)"
show pullstart run --config ../pullstart.yml
expect 0

say "a local edit on a path the next update changes: pullstart refuses and touches nothing"
echo "local hotfix" >>message.txt
(
    cd "$demo/dev"
    echo "hello from v3" >message.txt
    git commit -q -am "v3: another message"
    git push -q
)
show pullstart run --config ../pullstart.yml
expect 4
show pullstart check --config ../pullstart.yml --output json
expect 4
cmd git status --short
cmd git log -1 --oneline
note "(the local edit is still there, HEAD did not move)"

say "remove the local edit, and the next run goes through"
git checkout -q -- message.txt
show pullstart run --config ../pullstart.yml
expect 0
cmd git log -1 --oneline
compose_logs

say "done"
if [ "$mode" = docker ]; then
    note "the compose project $project is taken down on exit (down -t 0)"
fi
