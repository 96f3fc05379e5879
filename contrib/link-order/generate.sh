#!/usr/bin/env bash
# Regenerate contrib/link-order/hot-functions.txt: the functions that pullstart's common runs
# execute, which build.rs asks the linker to place next to each other at the start of the code.
#
# Why (issue 7): Linux maps a program's code in 64 KiB windows around each page it faults in.
# When the ~2,000 functions a run executes are spread over 5.6 MB of code, almost all of it ends
# up resident; packed together they take ~1.4 MB. Measured with contrib/bench: peak RSS of a
# no-change run 7.8 -> 5.2 MiB, of a 1-file update 11.6 -> 9.2 MiB.
#
# How: builds the release binary, makes a small compose project with the git CLI (a bare remote,
# a checkout, pushes from another clone), and runs pullstart under valgrind's callgrind for the
# common cases: no change over a local path, file://, git:// and http(s) (when git daemon and
# lighttpd are there), updates that modify, add, delete and rename files, a compose-file change,
# status, JSON output, the entrypoint's clone, --help and --version. Every function of the
# pullstart binary with a cost in any profile is listed, each in the order it first ran: the
# no-change run's first (the hot path), then what each next case adds. Code that runs early sits
# together, so a run's peak (in the fetch, or in the index write) has only the code it needed
# so far resident, not all of it.
#
# The list names symbols as the linker sees them (mangled). The hashes in them stay the same
# across edits of pullstart's code but change with a new rustc or new dependency versions: after
# either, run this again. A stale list only costs memory; the build does not depend on it.
#
#   contrib/link-order/generate.sh            # rewrites hot-functions.txt
#   KEEP=1 contrib/link-order/generate.sh     # and keeps the projects, logs and profiles
#
# Needs: cargo, git, valgrind; optionally git daemon, lighttpd with mod_cgi/mod_openssl, openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/contrib/link-order/hot-functions.txt

say() { echo "link-order: $*" >&2; }
die() { echo "link-order: ERROR: $*" >&2; exit 1; }
for tool in cargo git valgrind awk; do
    command -v "$tool" >/dev/null || die "$tool not found; install it (valgrind: apt-get install valgrind)"
done

say "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/pullstart
BIN=$(cd "$(dirname "$BIN")" && pwd)/pullstart
nm "$BIN" >/dev/null 2>&1 || die "$BIN has no symbol table (is the release profile stripping it?)"

W=$(mktemp -d "${TMPDIR:-/tmp}/pullstart-link-order.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

# A hermetic git: no user or system configuration.
export HOME=$W/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$W/home/.gitconfig
mkdir -p "$HOME"
git config --global user.name "link order"
git config --global user.email "link-order@example.invalid"
git config --global init.defaultBranch main
git config --global protocol.file.allow always

# ----- the project: a compose file, three services' code, 2,000 files -----
git init -q --bare "$W/remote.git"
git clone -q "$W/remote.git" "$W/dev" 2>/dev/null
cd "$W/dev"
cat >docker-compose.yml <<'EOF'
name: demo
services:
  web:
    image: python:3.12-slim
    env_file: web.env
    volumes:
      - ./web:/app
  worker:
    build: ./worker
    volumes:
      - ./worker/src:/app/src
EOF
echo "GREETING=hello" >web.env
mkdir -p worker/src docs
echo "FROM python:3.12-slim" >worker/Dockerfile
echo "requests==2.31.0" >worker/requirements.txt
for d in $(seq 1 40); do
    mkdir -p "web/m$d"
    for f in $(seq 1 50); do echo "web $d $f" >"web/m$d/f$f.py"; done
done
for f in $(seq 1 20); do echo "job $f" >"worker/src/job$f.py"; echo "doc $f" >"docs/d$f.md"; done
git add -A && git commit -q -m base && git push -q origin main

# The compose stand-in: `config` prints what Compose v2 prints for the file above; every other
# command (restart, up) succeeds at once.
CO=$W/co
cat >"$W/compose" <<EOF
#!/bin/sh
for arg in "\$@"; do
    case \$arg in
    --no-interpolate) raw=1 ;;
    config) config=1 ;;
    esac
done
[ -n "\$config" ] || exit 0
if [ -n "\$raw" ]; then
    printf 'name: demo\nservices:\n  web:\n    env_file:\n      - path: $CO/web.env\n        required: true\n    image: python:3.12-slim\n  worker:\n    build:\n      context: $CO/worker\n      dockerfile: Dockerfile\n'
    exit 0
fi
cat <<YAML
name: demo
services:
  web:
    environment:
      GREETING: hello
    image: python:3.12-slim
    networks:
      default: null
    volumes:
      - type: bind
        source: $CO/web
        target: /app
        bind:
          create_host_path: true
  worker:
    build:
      context: $CO/worker
      dockerfile: Dockerfile
    networks:
      default: null
    volumes:
      - type: bind
        source: $CO/worker/src
        target: /app/src
        bind:
          create_host_path: true
networks:
  default:
    name: demo_default
YAML
EOF
chmod +x "$W/compose"

git clone -q "$W/remote.git" "$CO"
PROFILES=()
# profile NAME DIR ARGS...: run pullstart in DIR under callgrind; its exit code is not checked
# here (some cases exit non-zero on purpose), the profile is what counts.
profile() {
    local name=$1 dir=$2
    shift 2
    (cd "$dir" && valgrind --tool=callgrind --demangle=no --dump-every-bb=500000 \
        --callgrind-out-file="$W/cg.$name" "$BIN" "$@") >"$W/$name.log" 2>&1 || true
    [ -s "$W/cg.$name" ] || { tail -20 "$W/$name.log" >&2; die "no profile for $name"; }
    # cg.NAME.1, cg.NAME.2, ...: the functions each stretch of 500,000 basic blocks executed, in
    # time order; cg.NAME: the rest, at exit.
    local i=1
    while [ -s "$W/cg.$name.$i" ]; do PROFILES+=("$W/cg.$name.$i"); i=$((i + 1)); done
    PROFILES+=("$W/cg.$name")
    say "profiled $name"
}
RUN=(--compose-command "$W/compose" --health-timeout 0)
# push_change: a commit in dev that modifies, adds, deletes and renames files, pushed.
push_change() {
    local n=$1
    cd "$W/dev"
    for f in $(seq 1 20); do echo "v$n" >>"web/m$n/f$f.py"; done
    for f in $(seq 1 5); do echo "new $n $f" >"web/m$n/new$n-$f.py"; done
    git rm -q "web/m$n/f50.py" "web/m$n/f49.py"
    git mv "web/m$n/f48.py" "web/m$n/moved.py"
    echo "job v$n" >worker/src/job1.py
    git add -A && git commit -q -m "change $n" && git push -q origin main
    cd - >/dev/null
}

# The hot path first: a run that finds nothing new.
profile nochange "$CO" "${RUN[@]}"
push_change 1
profile update "$CO" "${RUN[@]}"
push_change 2
profile update-json "$CO" "${RUN[@]}" --output json
(cd "$W/dev" && echo "    restart: unless-stopped" >>docker-compose.yml && git commit -q -am compose && git push -q origin main)
profile compose-change "$CO" "${RUN[@]}"
push_change 3
profile check "$CO" check "${RUN[@]}"
profile status "$CO" status "${RUN[@]}"
echo "local edit" >>"$CO/web/m3/f1.py"
profile refused "$CO" "${RUN[@]}"
(cd "$CO" && git checkout -q -- web/m3/f1.py)
profile version "$CO" --version
profile help "$CO" --help
# The entrypoint's CMD is a program that does not exist: an exec that works would replace the
# process before callgrind writes its profile.
profile entrypoint "$W" entrypoint --url "file://$W/remote.git" --dir "$W/ep" -- "$W/none"
profile entrypoint-update "$W" entrypoint --url "file://$W/remote.git" --dir "$W/ep" -- "$W/none"

# The same no-change run over the other transports.
git clone -q "file://$W/remote.git" "$W/co-file"
profile nochange-file "$W/co-file" "${RUN[@]}"
if git daemon --help >/dev/null 2>&1; then
    port=$((20000 + RANDOM % 20000))
    git daemon --reuseaddr --listen=127.0.0.1 --port=$port --export-all --base-path="$W" "$W" &
    PIDS+=($!)
    sleep 1
    git clone -q "git://127.0.0.1:$port/remote.git" "$W/co-git"
    profile nochange-git "$W/co-git" "${RUN[@]}"
else
    say "git daemon not found: the git:// transport is left out"
fi
backend=$(git --exec-path)/git-http-backend
if command -v lighttpd >/dev/null && command -v openssl >/dev/null && [ -x "$backend" ]; then
    mkdir -p "$W/web/htdocs"
    (cd "$W/web" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj "/CN=link order CA" &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 &&
        printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
            keyUsage=digitalSignature,keyEncipherment extendedKeyUsage=serverAuth >server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 2 -extfile server.ext) >/dev/null 2>&1
    hport=$((20000 + RANDOM % 20000)) sport=$((20000 + RANDOM % 20000))
    cat >"$W/web/lighttpd.conf" <<EOF
server.document-root = "$W/web/htdocs"
server.bind = "127.0.0.1"
server.port = $hport
server.modules = ("mod_alias", "mod_setenv", "mod_cgi", "mod_openssl")
alias.url = ("/git" => "$backend")
cgi.assign = ("" => "")
setenv.add-environment = ("GIT_PROJECT_ROOT" => "$W", "GIT_HTTP_EXPORT_ALL" => "1", "GIT_CONFIG_NOSYSTEM" => "1", "HOME" => "$HOME")
\$SERVER["socket"] == "127.0.0.1:$sport" {
  ssl.engine = "enable"
  ssl.pemfile = "$W/web/server.pem"
  ssl.privkey = "$W/web/server.key"
}
EOF
    lighttpd -D -f "$W/web/lighttpd.conf" >"$W/web/log" 2>&1 &
    PIDS+=($!)
    sleep 1
    git clone -q "http://127.0.0.1:$hport/git/remote.git" "$W/co-http"
    profile nochange-http "$W/co-http" "${RUN[@]}"
    # (GIT_SSL_CAINFO, not http.sslCAInfo: a CA bundle in the environment would override that.)
    export GIT_SSL_CAINFO=$W/web/ca.pem
    git clone -q "https://127.0.0.1:$sport/git/remote.git" "$W/co-https"
    profile nochange-https "$W/co-https" "${RUN[@]}"
    push_change 4
    profile update-https "$W/co-https" "${RUN[@]}"
else
    say "lighttpd, openssl or git-http-backend not found: http and https are left out"
fi

# Every function of the pullstart binary (callgrind's `ob=`) that has a cost line of its own
# (`fn=`, not the `cfn=` of a call) in any profile, each once, in the order of the profiles
# (cases first to last, each case's stretches in time order).
awk '
    match($0, /^c?(ob|fn)=\([0-9]+\)/) {
        called = substr($0, 1, 1) == "c"
        kind = substr($0, called ? 2 : 1, 2)
        id = substr($0, RSTART, RLENGTH); sub(/^c?(ob|fn)=/, "", id)
        name = substr($0, RLENGTH + 2)
        key = FILENAME SUBSEP kind SUBSEP id
        if (name != "") names[key] = name
        if (called) next
        if (kind == "ob") in_bin = names[key] ~ /\/pullstart$/
        else if (in_bin && !(names[key] in seen)) { seen[names[key]] = 1; print names[key] }
    }
' "${PROFILES[@]}" >"$OUT.new"
count=$(wc -l <"$OUT.new")
[ "$count" -gt 500 ] || die "only $count functions found in the profiles"
mv "$OUT.new" "$OUT"
say "wrote $count functions to ${OUT#"$ROOT"/}; rebuild (cargo build --release) to link with it"
