#!/usr/bin/env bash
# Side-by-side benchmark of pullstart against the git pipelines it replaces (issue 7).
#
#   contrib/bench/run.sh [--quick] [--runs N] [--profile] [--keep] [--no-build] [--out DIR]
#
# Builds pullstart (cargo build --release), makes its own repositories in a temporary folder
# (a bare remote, a dev clone that pushes, a checkout cloned from the remote; files made with
# `git fast-import`), and measures, case by case, in one run:
#   pullstart  pullstart --compose-command true --services app   (a no-op restart)
#   (a)        git fetch && [ -n "$(git diff HEAD origin/main --name-only)" ] && git pull
#   (b)        git fetch && git merge --ff-only
# Each is started as `sh -c 'cd CHECKOUT && ...'`, as cron would. Wall time is hyperfine's
# median; CPU time (user+sys, the whole process tree) and peak RSS (the largest process in the
# tree) are medians of a second, interleaved series of runs timed with wait4(2) by measure.c.
# Every update run starts from the same state (prepare.sh: reset, refs back, fetched objects
# dropped, index re-stat'ed). The report (markdown, with PASS/FAIL per target of issue 7) is
# printed at the end and written to target/bench/report.md, with the raw data beside it.
#
# Options:
#   --quick      fewer runs and no 100,000-file repository (about 2 minutes)
#   --present-only  only the "objects present" cases (issue 15: the update of the checkout
#                alone, the new commit already fetched), with the repositories they need
#   --runs N     N measured runs in every case (defaults: 41 no-change, 11 update in the
#                20,000-file repository, 9 in the 100,000-file one)
#   --profile    afterwards, run pullstart under valgrind's callgrind (debug-symbol build in
#                $PROFILE_TARGET_DIR, default /tmp/bench-target) for the no-change case and
#                the 1,000-file update, 1,000-file rename (20k) and 10-file update (100k), and
#                under massif for the updates; output in target/bench/profile/
#   --profile-only  only the callgrind part of --profile (no timings, no report)
#   --keep       keep the temporary folder (its path is printed)
#   --no-build   use the existing binaries ($PULLSTART_BIN, default target/release/pullstart,
#                and for --profile the one in $PROFILE_TARGET_DIR)
#   --out DIR    where the report goes (default target/bench)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QUICK=0 PRESENT_ONLY=0 KEEP=0 BUILD=1 PROFILE=0 PROFILE_ONLY=0 RUNS=
OUT=$ROOT/target/bench
PROFILE_TARGET_DIR=${PROFILE_TARGET_DIR:-/tmp/bench-target}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --present-only) PRESENT_ONLY=1 ;;
        --keep) KEEP=1 ;;
        --no-build) BUILD=0 ;;
        --profile) PROFILE=1 ;;
        --profile-only) PROFILE=1 PROFILE_ONLY=1 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS=$2; shift ;;
        --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -z "$RUNS" ] || [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"

log() { printf '\n== %s  %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- tools
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v jq >/dev/null || need+=(jq)
command -v git >/dev/null || need+=(git)
command -v cc >/dev/null || need+=(gcc)
command -v awk >/dev/null || need+=(mawk)
if [ "$PROFILE" = 1 ]; then
    command -v valgrind >/dev/null || need+=(valgrind)
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} (apt-get)"
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- build
BIN=${PULLSTART_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pullstart}
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
fi
[ -x "$BIN" ] || die "no pullstart binary at $BIN"
PBIN=$PROFILE_TARGET_DIR/release/pullstart
if [ "$PROFILE" = 1 ] && { [ "$BUILD" = 1 ] || [ ! -x "$PBIN" ]; }; then
    log "cargo build --release with debug symbols, in $PROFILE_TARGET_DIR (for callgrind)"
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --quiet --target-dir "$PROFILE_TARGET_DIR")
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
# Flags that keep pullstart from waiting on containers that the no-op compose stand-in never
# starts, where this version of pullstart has them.
extra_flags() { if "$1" --help 2>/dev/null | grep -q -- '--health-timeout'; then echo " --health-timeout 0"; fi; }
EXTRA=$(extra_flags "$BIN")

SOURCE_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    SOURCE_REV="$SOURCE_REV + uncommitted changes in src/"
fi
[ "$BUILD" = 1 ] || SOURCE_REV="prebuilt binary $BIN"

# Whether the binary was linked with contrib/link-order/hot-functions.txt (build.rs): how many of
# the listed functions it has, and whether its code starts with one of them. A list made with
# another rustc or other dependency versions names few of them, and costs memory.
link_order() {
    local list=$ROOT/contrib/link-order/hot-functions.txt
    [ -s "$list" ] || { echo "no contrib/link-order/hot-functions.txt"; return; }
    command -v nm >/dev/null || { echo "not checked (no nm)"; return; }
    nm -n "$BIN" 2>/dev/null | awk -v list="$list" '
        BEGIN { while ((getline name <list) > 0) { listed[name] = 1; total++ } }
        $2 ~ /^[tT]$/ { if (!text++) first = ($3 in listed); if ($3 in listed && !seen[$3]++) found++ }
        END {
            printf "%d of the %d functions in contrib/link-order/hot-functions.txt are in the binary", found, total
            if (!text) print "; it has no symbol table"
            else if (found < total * 0.9) print ": the list is stale, run contrib/link-order/generate.sh"
            else if (!first) print ", but they are not placed first: the linker did not take the list (see build.rs)"
            else print ", placed first"
        }'
}
LINK_ORDER=$(link_order)

# ---------------------------------------------------------------- hermetic git
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pullstart-bench.XXXXXX")
DAEMON_PID=
cleanup() {
    if [ -n "$DAEMON_PID" ]; then kill "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for v in $(env | sed -n 's/^\(GIT_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
GIT_DIR_BIN=$(dirname "$(command -v git)")
unset TZ # as under cron
export LC_ALL=C HOME=$TMP/home XDG_CONFIG_HOME=$TMP/home/.config
export PATH=$GIT_DIR_BIN:/usr/local/bin:/usr/bin:/bin # about cron's PATH (plus where git is)
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@pullstart.invalid
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@pullstart.invalid
mkdir -p "$HOME" "$TMP/remotes" "$TMP/res" "$OUT"
rm -rf "$OUT/raw" "$OUT/report.md"
mkdir -p "$OUT/raw"

MEASURE=$TMP/measure
cc -O2 -o "$MEASURE" "$HERE/measure.c"
T0=1700000000 # the mtime every worktree file gets (older than any index written later)

# Run sizes: hyperfine warmup (_W) and measured runs (_R) per tool, and rounds of the
# interleaved CPU/RSS series (_C; CPU time and RSS vary much less than wall time).
if [ "$QUICK" = 1 ]; then
    NC_W=3 NC_R=11 NC_C=7 U_W=1 U_R=5 U_C=5 BIG_W=0 BIG_R=0 BIG_C=0
else
    NC_W=5 NC_R=41 NC_C=21 U_W=2 U_R=11 U_C=7 BIG_W=1 BIG_R=9 BIG_C=7
fi
if [ -n "$RUNS" ]; then
    NC_R=$RUNS NC_C=$RUNS U_R=$RUNS U_C=$RUNS
    [ "$QUICK" = 1 ] || BIG_R=$RUNS BIG_C=$RUNS
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- repositories
declare -A BASE
# make_repo NAME NFILES "CASE..."
make_repo() {
    local name=$1 nfiles=$2 cases=$3
    local dev=$TMP/$name-dev remote=$TMP/remotes/$name.git co=$TMP/$name-co
    log "repository $name: $nfiles files, update cases: $cases"
    git init -q -b main "$dev"
    awk -v nfiles="$nfiles" -v cases="$cases" -f "$HERE/gen.awk" | git -C "$dev" fast-import --quiet
    git init -q --bare -b main "$remote"
    git -C "$dev" remote add origin "$remote"
    # pack.window=0: no delta search over fast-import's objects (setup speed only).
    git -C "$dev" -c pack.window=0 push -q origin main 'refs/heads/case-*:refs/cases/*'
    # A real clone (not hardlinks), of main only: the case commits are not in the checkout.
    git -c pack.window=0 clone -q --no-local "file://$remote" "$co"
    git -C "$co" remote set-url origin "$remote"
    git -C "$co" config gc.auto 0 # no auto-gc in the middle of a measurement; fetches still
                                  # start `git maintenance run --auto`, as by default
    (cd "$co" && git ls-files -z | xargs -0 touch -m -d "@$T0" -- && git update-index -q --refresh)
    git -C "$co" update-ref refs/pullstart/deployed HEAD
    (cd "$co/.git/objects" && find . -type f | LC_ALL=C sort) >"$TMP/$name.objects"
    BASE[$name]=$(git -C "$dev" rev-parse main)
    local c
    for c in $cases; do
        git -C "$dev" diff --no-renames --name-only --diff-filter=MD main "case-$c" >"$TMP/$name-$c.touch"
    done
}

# ---------------------------------------------------------------- git daemon
DAEMON_PORT=
start_daemon() {
    local try port i
    for try in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        "$(git --exec-path)/git-daemon" --export-all --base-path="$TMP/remotes" \
            --listen=127.0.0.1 --port="$port" --reuseaddr "$TMP/remotes" \
            >>"$TMP/daemon.log" 2>&1 &
        DAEMON_PID=$!
        for i in $(seq 50); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then DAEMON_PORT=$port; return 0; fi
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=
    done
    die "could not start git daemon (see $TMP/daemon.log)"
}

# ---------------------------------------------------------------- measuring
TOOLS=(p a b)
declare -A NAME=([p]=pullstart [a]="(a) fetch+diff+pull" [b]="(b) fetch+merge --ff-only")
# The "objects present" family (issue 15) compares the update of the checkout alone: the new
# commit is already fetched and origin/main already at it, so pullstart's fetch finds nothing to
# download, and git runs (m) `git merge --ff-only`, or (f+m) the same after a no-op `git fetch`.
declare -A PNAME=([p]=pullstart [a]="(m) merge --ff-only" [b]="(f+m) fetch (no-op)+merge --ff-only")
declare -A WALL CPU RSS CRSS SRSS IWALL NOTE LABEL
CASES=()  # the cases that fetch the new commit
PCASES=() # the "objects present" cases

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# interleaved ROUNDS SUFFIX [MEASURE_OPTION]: ROUNDS rounds of the three tools under measure.c,
# the order rotating every round, each run after $prep; results appended to
# $TMP/res/$id.TOOL$SUFFIX. Uses bench's locals id, prep and inner.
interleaved() {
    local rounds=$1 suffix=$2 r k t
    shift 2
    for t in "${TOOLS[@]}"; do : >"$TMP/res/$id.$t$suffix"; done
    for ((r = 0; r < rounds; r++)); do
        for k in 0 1 2; do
            t=${TOOLS[$(((r + k) % 3))]}
            [ -z "$prep" ] || $prep
            "$MEASURE" "$@" "$TMP/res/$id.$t$suffix" sh -c "${inner[$t]}"
        done
    done
}

# present_objects REPO UPDATE_CASE: fetches the case's commit into the checkout (by git, which
# keeps fewer than 100 objects loose) and lists the object files then there, for prepare.sh.
# Called right after a prepare.sh that reset origin/main, so that the fetch has work to do.
present_objects() {
    local co=$TMP/$1-co list=$TMP/$1-$2.present.objects
    git -C "$co" fetch -q
    (cd "$co/.git/objects" && find . -type f | LC_ALL=C sort) >"$list"
    echo "$list"
}

# bench CASE_ID "LABEL" REPO UPDATE_CASE(or -) WARMUP RUNS CPU_ROUNDS [present]
# With `present`, a case of the "objects present" family: every run starts with the new commit's
# objects in the checkout and origin/main at it; the git side is (m) and (f+m) (see PNAME).
bench() {
    local id=$1 label=$2 repo=$3 upd=$4 warm=$5 runs=$6 rounds=$7 family=${8:-fetch}
    local co=$TMP/$repo-co dev=$TMP/$repo-dev base=${BASE[$repo]}
    local new=$base prep="" names_of=NAME
    LABEL[$id]=$label
    log "$label"
    if [ "$upd" != - ]; then
        new=$(git -C "$dev" rev-parse "case-$upd")
        prep="bash $HERE/prepare.sh $co $base $TMP/$repo-$upd.touch $TMP/$repo.objects $T0"
    fi
    git -C "$dev" push -q -f origin "$new:refs/heads/main" # the remote holds the new commit
    bash "$HERE/prepare.sh" "$co" "$base" /dev/null "$TMP/$repo.objects" "$T0"

    local -A inner=(
        [p]="cd $co && exec $BIN --compose-command true --services app$EXTRA"
        [a]="cd $co && git fetch && [ -n \"\$(git diff HEAD origin/main --name-only)\" ] && git pull"
        [b]="cd $co && git fetch && git merge --ff-only"
    )
    if [ "$family" = present ]; then
        PCASES+=("$id")
        names_of=PNAME
        prep="bash $HERE/prepare.sh $co $base $TMP/$repo-$upd.touch $(present_objects "$repo" "$upd") $T0 $new"
        inner[a]="cd $co && git merge --ff-only"
        inner[b]="cd $co && git fetch && git merge --ff-only"
    else
        CASES+=("$id")
    fi
    local -n names=$names_of
    local t rc bad

    # One checked run of each tool: right exit code, right end state.
    for t in "${TOOLS[@]}"; do
        [ -z "$prep" ] || $prep
        : >"$TMP/verify"
        "$MEASURE" "$TMP/verify" sh -c "${inner[$t]}"
        rc=$(awk '{ print $5 }' "$TMP/verify")
        bad=""
        case $t:$rc in p:0 | b:0 | a:0) ;; a:1) [ "$upd" = - ] || bad="exit 1" ;; *) bad="exit $rc" ;; esac
        [ "$(git -C "$co" rev-parse HEAD)" = "$new" ] || bad="$bad HEAD not at the expected commit"
        if [ "$upd" != - ] && [ -n "$(git -C "$co" status --porcelain --untracked-files=all)" ]; then
            bad="$bad worktree differs from the new commit"
        fi
        if [ "$t" = p ] && [ "$(git -C "$co" rev-parse -q --verify refs/pullstart/deployed)" != "$new" ]; then
            bad="$bad refs/pullstart/deployed not at the expected commit"
        fi
        if [ -n "$bad" ]; then
            NOTE[$id:$t]="WRONG RESULT:$bad"
            echo "!! ${names[$t]}: wrong result in '$label':$bad" >&2
            (cd "$co" && sh -c "${inner[$t]}") >&2 || true
        fi
    done

    # Wall time: hyperfine (one tool after the other, each run after $prep).
    local hf=(hyperfine -N -i --style basic --warmup "$warm" --runs "$runs"
        --export-json "$OUT/raw/$id.json")
    [ -z "$prep" ] || hf+=(--prepare "$prep")
    for t in "${TOOLS[@]}"; do hf+=(-n "${names[$t]}" "sh -c '${inner[$t]}'"); done
    "${hf[@]}" >&2
    local i=0 codes
    for t in "${TOOLS[@]}"; do
        WALL[$id:$t]=$(jq -r ".results[$i].median" "$OUT/raw/$id.json")
        codes=$(jq -r ".results[$i].exit_codes // [] | map(tostring) | unique | join(\",\")" "$OUT/raw/$id.json")
        case $t:$codes in *:0 | *: | a:1 | a:0,1) ;; *) NOTE[$id:$t]="${NOTE[$id:$t]:-} exit codes $codes" ;; esac
        i=$((i + 1))
    done

    # CPU and peak RSS: wait4(2) over the same commands, interleaved.
    interleaved "$rounds" ""
    for t in "${TOOLS[@]}"; do
        cp "$TMP/res/$id.$t" "$OUT/raw/$id.$t.tsv"
        IWALL[$id:$t]=$(awk '{ print $1 }' "$TMP/res/$id.$t" | median)
        CPU[$id:$t]=$(awk '{ print $2 + $3 }' "$TMP/res/$id.$t" | median)
        RSS[$id:$t]=$(awk '{ print $4 }' "$TMP/res/$id.$t" | median)
        codes=$(awk '{ print $5 }' "$TMP/res/$id.$t" | sort -u | paste -sd,)
        case $t:$codes in *:0 | a:1 | a:0,1) ;; *) NOTE[$id:$t]="${NOTE[$id:$t]:-} exit codes $codes" ;; esac
    done

    if [ "$family" = present ]; then
        # No pack is made (no pack-objects in the tree): the whole tree's peak (wait4) is shown.
        printf '   medians: wall %s | cpu %s | rss %s KiB (pullstart, m, f+m)\n' \
            "${WALL[$id:p]}/${WALL[$id:a]}/${WALL[$id:b]}" "${CPU[$id:p]}/${CPU[$id:a]}/${CPU[$id:b]}" \
            "${RSS[$id:p]}/${RSS[$id:a]}/${RSS[$id:b]}" >&2
        return
    fi
    # Peak RSS of the client side alone (measure --client-rss, under ptrace: memory only): over a
    # local-path remote each tool starts git's server side (upload-pack, pack-objects) as its own
    # child, and that is often the largest process of the tree.
    interleaved $((rounds < 5 ? rounds : 5)) .rss --client-rss
    for t in "${TOOLS[@]}"; do
        cp "$TMP/res/$id.$t.rss" "$OUT/raw/$id.$t.client-rss.tsv"
        CRSS[$id:$t]=$(awk '{ print $1 }' "$TMP/res/$id.$t.rss" | median)
        SRSS[$id:$t]=$(awk '{ print $2 }' "$TMP/res/$id.$t.rss" | median)
    done
    printf '   medians: wall %s | cpu %s | rss %s KiB | client rss %s KiB (pullstart, a, b)\n' \
        "${WALL[$id:p]}/${WALL[$id:a]}/${WALL[$id:b]}" "${CPU[$id:p]}/${CPU[$id:a]}/${CPU[$id:b]}" \
        "${RSS[$id:p]}/${RSS[$id:a]}/${RSS[$id:b]}" "${CRSS[$id:p]}/${CRSS[$id:a]}/${CRSS[$id:b]}" >&2
}

# ---------------------------------------------------------------- callgrind (--profile)
run_profile() {
    mkdir -p "$OUT/profile"
    # Shorter source paths in callgrind_annotate's lines.
    shorten() {
        sed -E -e 's#/[^ ]*/registry/src/[^/]*/##' -e 's#/rustc/[0-9a-f]*/library/#std:#' \
            -e "s#$ROOT/##" -e 's# \[[^]]*/release/pullstart\]$##'
    }
    # profile_case ID REPO UPDATE_CASE(or -) [present]
    profile_case() {
        local id=$1 repo=$2 upd=$3 co=$TMP/$2-co base=${BASE[$2]} new
        new=$base
        [ "$upd" = - ] || new=$(git -C "$TMP/$repo-dev" rev-parse "case-$upd")
        git -C "$TMP/$repo-dev" push -q -f origin "$new:refs/heads/main"
        local touch=/dev/null objects=$TMP/$repo.objects tracking=$base
        [ "$upd" = - ] || touch=$TMP/$repo-$upd.touch
        bash "$HERE/prepare.sh" "$co" "$base" "$touch" "$objects" "$T0"
        if [ "${4:-}" = present ]; then
            objects=$(present_objects "$repo" "$upd") tracking=$new
            bash "$HERE/prepare.sh" "$co" "$base" "$touch" "$objects" "$T0" "$tracking"
        fi
        log "callgrind: $id"
        (cd "$co" && valgrind --tool=callgrind --callgrind-out-file="$OUT/profile/$id.callgrind" \
            "$PBIN" --compose-command true --services app$(extra_flags "$PBIN")) 2>"$OUT/profile/$id.valgrind.log" >/dev/null \
            || echo "!! profile $id: pullstart failed, see $OUT/profile/$id.valgrind.log" >&2
        [ "$(git -C "$co" rev-parse HEAD)" = "$new" ] || echo "!! profile $id: HEAD not at the expected commit" >&2
        if [ "$upd" != - ]; then
            # Where the heap peak comes from (massif; RSS adds the binary and mapped files).
            bash "$HERE/prepare.sh" "$co" "$base" "$touch" "$objects" "$T0" "$tracking"
            (cd "$co" && valgrind --tool=massif --massif-out-file="$OUT/profile/$id.massif" \
                "$PBIN" --compose-command true --services app$(extra_flags "$PBIN")) >/dev/null 2>&1 || true
            ms_print "$OUT/profile/$id.massif" 2>/dev/null | shorten >"$OUT/profile/$id.massif.txt" || true
        fi
        callgrind_annotate --inclusive=yes "$OUT/profile/$id.callgrind" 2>/dev/null \
            | shorten | sed -n '1,80p' >"$OUT/profile/$id.inclusive.txt"
        callgrind_annotate "$OUT/profile/$id.callgrind" 2>/dev/null \
            | shorten | sed -n '1,60p' >"$OUT/profile/$id.self.txt"
        # pullstart's own functions and the gix entry points they call, by inclusive cost.
        callgrind_annotate --inclusive=yes --threshold=100 "$OUT/profile/$id.callgrind" 2>/dev/null \
            | shorten | grep -E '^ *[0-9,]+ \( *[0-9.]+%\)  [^ ]*:(pullstart::|gix[a-z_]*::[^ ]*(open|fetch|status|checkout|index|write|diff|find|decode))' \
            | sed -n '1,60p' >"$OUT/profile/$id.steps.txt" || true
    }
    git -C "$CO20" remote set-url origin "$TMP/remotes/r20k.git"
    profile_case nc-local r20k -
    profile_case u20-mod1000 r20k mod1000
    profile_case u20-ren1000 r20k ren1000
    [ "$BIG_R" = 0 ] || profile_case u100-mod10 r100k mod10
    profile_case p20-mod1 r20k mod1 present
    profile_case p20-mod1000 r20k mod1000 present
    profile_case p20-ren1000 r20k ren1000 present
    [ "$BIG_R" = 0 ] || profile_case p100-mod10 r100k mod10 present
    echo "callgrind: $OUT/profile/ (*.steps.txt, *.inclusive.txt, *.self.txt, *.massif.txt;" \
        "callgrind_annotate --tree=caller or kcachegrind for more)" >&2
}


# ---------------------------------------------------------------- the cases
START=$(date +%s)
CO20=$TMP/r20k-co
SMALL_CASES="mod1 mod100 mod1000 del1000 ren1000"
make_repo r20k 20000 "$SMALL_CASES"
[ "$BIG_R" = 0 ] || make_repo r100k 100000 "mod10 mod1000"
if [ "$PROFILE_ONLY" = 1 ]; then
    run_profile
    exit 0
fi

if [ "$PRESENT_ONLY" = 0 ]; then
    bench nc-local "no change, local path (20k files)" r20k - "$NC_W" "$NC_R" "$NC_C"
    git -C "$CO20" remote set-url origin "file://$TMP/remotes/r20k.git"
    bench nc-file "no change, file:// (20k files)" r20k - "$NC_W" "$NC_R" "$NC_C"
    start_daemon
    git -C "$CO20" remote set-url origin "git://127.0.0.1:$DAEMON_PORT/r20k.git"
    bench nc-git "no change, git:// (20k files)" r20k - "$NC_W" "$NC_R" "$NC_C"
    git -C "$CO20" remote set-url origin "$TMP/remotes/r20k.git"

    bench u20-mod1 "update 1 file, 20k-file repo" r20k mod1 "$U_W" "$U_R" "$U_C"
    bench u20-mod100 "update 100 files, 20k-file repo" r20k mod100 "$U_W" "$U_R" "$U_C"
    bench u20-mod1000 "update 1,000 files, 20k-file repo" r20k mod1000 "$U_W" "$U_R" "$U_C"
    bench u20-del1000 "delete 1,000 files, 20k-file repo" r20k del1000 "$U_W" "$U_R" "$U_C"
    bench u20-ren1000 "rename 1,000 files, 20k-file repo" r20k ren1000 "$U_W" "$U_R" "$U_C"
    if [ "$BIG_R" != 0 ]; then
        bench u100-mod10 "update 10 files, 100k-file repo" r100k mod10 "$BIG_W" "$BIG_R" "$BIG_C"
        bench u100-mod1000 "update 1,000 files, 100k-file repo" r100k mod1000 "$BIG_W" "$BIG_R" "$BIG_C"
    fi
fi

# "objects present" (issue 15): the update of the checkout alone, the new commit already fetched.
bench p20-mod1 "update 1 file, 20k-file repo, objects present" r20k mod1 "$U_W" "$U_R" "$U_C" present
if [ "$QUICK" = 0 ]; then
    bench p20-mod100 "update 100 files, 20k-file repo, objects present" r20k mod100 "$U_W" "$U_R" "$U_C" present
fi
bench p20-mod1000 "update 1,000 files, 20k-file repo, objects present" r20k mod1000 "$U_W" "$U_R" "$U_C" present
if [ "$QUICK" = 0 ]; then
    bench p20-del1000 "delete 1,000 files, 20k-file repo, objects present" r20k del1000 "$U_W" "$U_R" "$U_C" present
    bench p20-ren1000 "rename 1,000 files, 20k-file repo, objects present" r20k ren1000 "$U_W" "$U_R" "$U_C" present
fi
if [ "$BIG_R" != 0 ]; then
    bench p100-mod10 "update 10 files, 100k-file repo, objects present" r100k mod10 "$BIG_W" "$BIG_R" "$BIG_C" present
    bench p100-mod1000 "update 1,000 files, 100k-file repo, objects present" r100k mod1000 "$BIG_W" "$BIG_R" "$BIG_C" present
fi

log "pullstart --version"
hyperfine -N --style basic --warmup 20 --runs 200 --export-json "$OUT/raw/version.json" \
    -n "pullstart --version" "$BIN --version" >&2
VERSION_WALL=$(jq -r '.results[0].median' "$OUT/raw/version.json")
ELAPSED=$(($(date +%s) - START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "n/a"; else printf "%.1f", v * 1000 }'; }
mib() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "n/a"; else printf "%.1f", v / 1024 }'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x == "" || y == "" || x == "nan" || y == "nan" || y == 0) print "nan"; else printf "%.2f", x / y }'; }
verdict() { awk -v r="$1" -v l="$2" 'BEGIN { if (r == "nan") print "n/a"; else print (r + 0 <= l + 0 ? "PASS" : "FAIL") }'; }

TARGETS=""
FAILS=0
# target "DESCRIPTION" CASE METRIC(WALL|CPU) VS(a|b) LIMIT
target() {
    local desc=$1 id=$2 metric=$3 vs=$4 limit=$5 p o r v note
    if [[ " ${CASES[*]} ${PCASES[*]} " != *" $id "* ]]; then
        TARGETS+="| $desc | not measured (--quick or --present-only) | ≤ ${limit}x | SKIP |"$'\n'
        return
    fi
    declare -n arr=$metric
    p=${arr[$id:p]} o=${arr[$id:$vs]}
    r=$(ratio "$p" "$o")
    v=$(verdict "$r" "$limit")
    note="${NOTE[$id:p]:-}${NOTE[$id:$vs]:-}"
    [ -z "$note" ] || v="FAIL (wrong result)"
    [ "$v" = PASS ] || FAILS=$((FAILS + 1))
    TARGETS+="| $desc | ${r}x ($(ms "$p") vs $(ms "$o") ms) | ≤ ${limit}x | $v |"$'\n'
}
target "no change, local path: wall ≤ 0.5x (a)" nc-local WALL a 0.5
target "no change, local path: CPU ≤ 0.5x (a)" nc-local CPU a 0.5
target "no change, file://: wall ≤ 0.5x (a)" nc-file WALL a 0.5
target "no change, file://: CPU ≤ 0.5x (a)" nc-file CPU a 0.5
target "no change, git://: client CPU ≤ 0.5x (a)" nc-git CPU a 0.5
target "no change, git://: wall ≤ 1.0x (a)" nc-git WALL a 1.0
target "update 1,000 files / 20k: wall ≤ 1.0x (b)" u20-mod1000 WALL b 1.0
target "update 1,000 files / 20k: CPU ≤ 1.0x (b)" u20-mod1000 CPU b 1.0
target "update 10 files / 100k: wall ≤ 0.3x (b)" u100-mod10 WALL b 0.3
target "update 10 files / 100k: CPU ≤ 0.3x (b)" u100-mod10 CPU b 0.3
# The "objects present" family (issue 15), against (m) `git merge --ff-only` on the same state.
present_targets() { # present_targets CASE "WHAT" LIMIT
    target "objects present, $2: wall ≤ ${3}x (m)" "$1" WALL a "$3"
    target "objects present, $2: CPU ≤ ${3}x (m)" "$1" CPU a "$3"
}
present_targets p20-mod1 "update 1 file / 20k" 0.5
present_targets p20-mod100 "update 100 files / 20k" 1.0
present_targets p20-mod1000 "update 1,000 files / 20k" 0.7
present_targets p20-del1000 "delete 1,000 files / 20k" 1.0
present_targets p20-ren1000 "rename 1,000 files / 20k" 1.0
present_targets p100-mod10 "update 10 files / 100k" 0.5
present_targets p100-mod1000 "update 1,000 files / 100k" 1.0
# Peak RSS (the client side: the tool's own processes, not the git server a local remote
# starts): the worst case over all cases.
worst_id="" worst=0 max_id="" max=0
for id in "${CASES[@]}"; do
    r=$(ratio "${CRSS[$id:p]}" "${CRSS[$id:b]}")
    if [ "$r" != nan ] && awk -v r="$r" -v w="$worst" 'BEGIN { exit !(r > w) }'; then worst=$r worst_id=$id; fi
    if awk -v r="${CRSS[$id:p]}" -v m="$max" 'BEGIN { exit !(r > m) }'; then max=${CRSS[$id:p]} max_id=$id; fi
done
if [ -n "$worst_id" ] && [ -n "$max_id" ]; then
    v=$(verdict "$worst" 1.0); [ "$v" = PASS ] || FAILS=$((FAILS + 1))
    TARGETS+="| peak RSS ≤ (b), every case | worst ${worst}x: $(mib "${CRSS[$worst_id:p]}") vs $(mib "${CRSS[$worst_id:b]}") MiB (${LABEL[$worst_id]}) | ≤ 1.0x | $v |"$'\n'
    v=$(awk -v m="$max" 'BEGIN { print (m < 32 * 1024 ? "PASS" : "FAIL") }'); [ "$v" = PASS ] || FAILS=$((FAILS + 1))
    TARGETS+="| peak RSS < 32 MiB, every case | max $(mib "$max") MiB (${LABEL[$max_id]}) | < 32 MiB | $v |"$'\n'
else
    TARGETS+="| peak RSS ≤ (b) and < 32 MiB, every case | not measured (--present-only) | | SKIP |"$'\n'
fi
v=$(awk -v w="$VERSION_WALL" 'BEGIN { print (w < 0.005 ? "PASS" : "FAIL") }'); [ "$v" = PASS ] || FAILS=$((FAILS + 1))
TARGETS+="| \`pullstart --version\` < 5 ms | $(ms "$VERSION_WALL") ms | < 5 ms | $v |"$'\n'

table() { # table METRIC FORMATTER [present]: the cases that fetch, or the "objects present" ones
    declare -n arr=$1
    local fmt=$2 id a=a b=b
    local -a ids=("${CASES[@]}")
    if [ "${3:-}" = present ]; then a=m b=f+m ids=("${PCASES[@]}"); fi
    [ ${#ids[@]} -gt 0 ] || { echo "(no case measured)"; return; }
    printf '| case | pullstart | (%s) | (%s) | pullstart/(%s) | pullstart/(%s) |\n|---|--:|--:|--:|--:|--:|\n' "$a" "$b" "$a" "$b"
    for id in "${ids[@]}"; do
        printf '| %s | %s | %s | %s | %sx | %sx |\n' "${LABEL[$id]}" "$($fmt "${arr[$id:p]}")" \
            "$($fmt "${arr[$id:a]}")" "$($fmt "${arr[$id:b]}")" \
            "$(ratio "${arr[$id:p]}" "${arr[$id:a]}")" "$(ratio "${arr[$id:p]}" "${arr[$id:b]}")"
    done
}

{
    echo "# pullstart benchmark"
    echo
    echo "\`contrib/bench/run.sh$([ "$QUICK" = 1 ] && echo " --quick")$([ -n "$RUNS" ] && echo " --runs $RUNS")\`, $(date -u '+%Y-%m-%d %H:%M UTC'), ${ELAPSED}s."
    echo "$(nproc) CPUs ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r);"
    echo "$("$BIN" --version) (source $SOURCE_REV), $(git --version), hyperfine $(hyperfine --version | awk '{ print $2 }')."
    echo "Link order: $LINK_ORDER."
    echo "Wall: hyperfine medians of $NC_R runs (no change), $U_R (updates, 20k)$([ "$BIG_R" != 0 ] && echo ", $BIG_R (100k)");"
    echo "CPU and RSS: medians of $NC_C / $U_C$([ "$BIG_R" != 0 ] && echo " / $BIG_C") interleaved runs; warm page cache."
    echo "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END."
    if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
        echo
        echo "**The machine was busy when the run started: wall times and their ratios are unreliable;**"
        echo "**CPU time and RSS much less so. Re-run on an idle machine for wall-time figures.**"
    fi
    echo
    echo "- pullstart: \`pullstart --compose-command true --services app$EXTRA\` (the restart is a no-op)"
    echo "- (a): \`git fetch && [ -n \"\$(git diff HEAD origin/main --name-only)\" ] && git pull\`"
    echo "- (b): \`git fetch && git merge --ff-only\`"
    echo "- objects present: (m) \`git merge --ff-only\`; (f+m) \`git fetch && git merge --ff-only\` (the fetch finds nothing to download)"
    echo
    echo "## Targets (issues 7 and 15)"
    echo
    echo "| target | measured: pullstart vs the git side | limit | result |"
    echo "|---|---|---|---|"
    printf '%s' "$TARGETS"
    echo
    echo "## Wall time, ms (hyperfine median)"
    echo
    table WALL ms
    echo
    echo "## CPU time (user+sys, whole process tree), ms (median)"
    echo
    table CPU ms
    echo
    echo "## Peak RSS of the client side (largest process that is not git's upload-pack or pack-objects), MiB (median)"
    echo
    table CRSS mib
    echo
    echo "## Peak RSS of the whole process tree (wait4: includes the git server side that a local remote starts), MiB (median)"
    echo
    table RSS mib
    echo
    echo "## Wall time of the interleaved runs (the CPU/RSS series), ms (median), as a cross-check"
    echo
    table IWALL ms
    echo
    echo "## Objects present: the update of the checkout alone"
    echo
    echo "The new commit is already fetched (objects in the checkout, \`origin/main\` at it) before every"
    echo "run: pullstart's fetch asks the remote for its refs and finds nothing to download (its"
    echo "\`upload-pack\` is in pullstart's CPU time and RSS); (m) does no fetch at all, (f+m) the same"
    echo "no-op fetch as pullstart."
    echo
    echo "### Wall time, ms (hyperfine median)"
    echo
    table WALL ms present
    echo
    echo "### CPU time (user+sys, whole process tree), ms (median)"
    echo
    table CPU ms present
    echo
    echo "### Peak RSS of the whole process tree (wait4), MiB (median)"
    echo
    table RSS mib present
    echo
    echo "### Wall time of the interleaved runs, ms (median), as a cross-check"
    echo
    table IWALL ms present
    echo
    echo "Each tool runs as \`sh -c 'cd CHECKOUT && ...'\`; the same shell start is in every figure."
    echo "Repositories: 20,000 and 100,000 files of ~420 bytes (100 a folder, two levels), made with"
    echo "\`git fast-import\`; updates spread over the tree; a local-path remote unless the case says"
    echo "otherwise. Before every update run, \`prepare.sh\` resets the checkout, the tracking ref and"
    echo "\`refs/pullstart/deployed\` to the old commit, deletes the objects the last run fetched (every"
    echo "run downloads the new commit) and re-stats the restored files in a fresh index, whichever tool"
    echo "ran before. For local and file:// remotes the CPU time and peak RSS of every tool include"
    echo "the \`git upload-pack\` it starts; over git:// the server side (git daemon) is not counted."
    echo "The RSS targets are judged on the client side: VmHWM of each process at its exit (ptrace,"
    echo "\`measure --client-rss\`, a separate series of up to 5 interleaved runs), the largest one that is"
    echo "not the git server side (over a real remote that runs on the git host, not on this one)."
    local_notes=""
    for id in "${CASES[@]}"; do for t in "${TOOLS[@]}"; do
        [ -z "${NOTE[$id:$t]:-}" ] || local_notes+="- ${LABEL[$id]}, ${NAME[$t]}: ${NOTE[$id:$t]}"$'\n'
    done; done
    for id in "${PCASES[@]}"; do for t in "${TOOLS[@]}"; do
        [ -z "${NOTE[$id:$t]:-}" ] || local_notes+="- ${LABEL[$id]}, ${PNAME[$t]}: ${NOTE[$id:$t]}"$'\n'
    done; done
    if [ -n "$local_notes" ]; then
        echo
        echo "## Problems"
        echo
        printf '%s' "$local_notes"
    fi
    echo
    echo "Raw data: hyperfine JSON, per-run \`wall user sys maxrss_kib exit\` lines and"
    echo "\`client_kib server_kib exit\` lines (\`*.client-rss.tsv\`) in \`raw/\`."
} >"$OUT/report.md"

if [ "$PROFILE" = 1 ]; then
    run_profile
    {
        echo
        echo "Profile (callgrind, instructions of pullstart alone, not its git children): \`profile/\`."
    } >>"$OUT/report.md"
fi

echo
cat "$OUT/report.md"
echo
echo "report: $OUT/report.md"
[ "$FAILS" = 0 ] && echo "all targets met" || echo "$FAILS target(s) missed"
