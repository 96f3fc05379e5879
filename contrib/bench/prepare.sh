#!/usr/bin/env bash
# Puts a benchmark checkout back into the state it had before an update: run by hyperfine's
# --prepare (and by run.sh's own loop) before EVERY measured run of EVERY tool, so that all of
# them start from the same state and no tool inherits work another one did.
#
#   prepare.sh CHECKOUT OLD_COMMIT TOUCH_LIST OBJECT_LIST MTIME [TRACKING_TIP]
#
# TOUCH_LIST: the paths the update modifies or deletes (they exist in OLD_COMMIT), one a line.
# OBJECT_LIST: the files under .git/objects to keep, sorted (LC_ALL=C): those right after the
# clone, or (the "objects present" cases) those after the new commit was fetched once.
# TRACKING_TIP: where `refs/remotes/origin/main` is set (default OLD_COMMIT): the new commit
# for the "objects present" cases, whose fetch then has nothing to download.
set -euo pipefail
co=$1 old=$2 touch_list=$3 object_list=$4 mtime=$5 tracking=${6:-$2}
cd "$co"

# HEAD, index and worktree back at the old commit (restores modified and deleted files, removes
# added ones), and the refs a run reads or moves.
git reset -q --hard "$old"
git update-ref refs/remotes/origin/main "$tracking"
git update-ref refs/pullstart/deployed "$old"
rm -f .git/ORIG_HEAD .git/FETCH_HEAD

# Drop the objects the last run fetched, so that every run downloads the new commit again (or,
# with TRACKING_TIP, finds it present).
(cd .git/objects && find . -type f | LC_ALL=C sort | LC_ALL=C comm -13 "$object_list" - \
    | xargs -r rm -f --)

# reset just wrote the restored files in the same instant as the index, so their entries are
# "racily clean" and the next tool would have to hash them. Give them back the tree's old mtime
# and let git record the stat data in a newly written index: every entry then matches by stat,
# for whichever tool runs next.
if [ -s "$touch_list" ]; then
    xargs -d '\n' -a "$touch_list" touch -m -d "@$mtime" --
fi
git update-index -q --refresh >/dev/null || true

# Nothing that the reset wrote is still waiting for the disk when the measured run starts.
sync -f .
