#!/usr/bin/env bash
# Writes the man page and the shell completions, made from pullstart's own clap definitions,
# into a directory laid out as a package installs them:
#
#   contrib/generate.sh [OUTDIR]        default OUTDIR: target/generated
#
#   OUTDIR/man/man1/pullstart.1                 (doc/pullstart.1 is the same page, committed)
#   OUTDIR/completions/pullstart.bash           -> /usr/share/bash-completion/completions/pullstart
#   OUTDIR/completions/_pullstart               -> /usr/share/zsh/vendor-completions/_pullstart
#   OUTDIR/completions/pullstart.fish           -> /usr/share/fish/vendor_completions.d/pullstart.fish
#
# PULLSTART=path/to/pullstart uses that binary (a release build, say); otherwise `cargo run`
# builds one. The output does not depend on the build profile.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/generated}"

if [ -n "${PULLSTART:-}" ]; then
    pullstart=("$PULLSTART")
else
    pullstart=(cargo run --quiet --locked --)
fi

mkdir -p "$out/man/man1" "$out/completions"
"${pullstart[@]}" --generate man > "$out/man/man1/pullstart.1"
"${pullstart[@]}" --generate complete-bash > "$out/completions/pullstart.bash"
"${pullstart[@]}" --generate complete-zsh > "$out/completions/_pullstart"
"${pullstart[@]}" --generate complete-fish > "$out/completions/pullstart.fish"
echo "generate.sh: wrote the man page and the bash, zsh and fish completions into $out" >&2
