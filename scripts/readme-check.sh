#!/usr/bin/env bash
# Runs the README's marked examples, in order, as a newcomer would type them
# at the root of a fresh clone, so the README cannot drift from what works.
#
# A block is checked when the line before its ```sh fence is
# `<!-- checked -->`. The blocks run in one bash script (set -eu: a failed
# command fails the check; a pipe's status is its last command's, as at a
# prompt)
# in a copy of the repository's files at target/readme-check/clone (made
# afresh each time, with the files' times kept, and the target/ folder
# shared: a second check on the same machine rebuilds only what changed),
# with `cargo install` putting weir into a private root that is first on
# PATH. The Kafka walk-through needs a broker: `scripts/kafka.sh start`
# reuses a running one (the test command's) or starts one. Prints where
# each block starts as it runs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
top="$repo/target/readme-check"
work="$top/clone"
rm -rf "$work"
mkdir -p "$work"

# The repository's files as a clone has them (tracked and new, not ignored).
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$repo" && xargs -0 cp -p --parents -t "$work")
ln -s "$repo/target" "$work/target"

script="$work/.readme-check.sh"
{
    echo 'set -eu'
    # A job a block left running in the background ends with the check.
    echo 'trap '"'"'kill $(jobs -p) 2>/dev/null || true'"'"' EXIT'
    echo 'export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"'
    awk '
        /^<!-- checked -->$/ { mark = 1; next }
        mark && /^```sh$/ { inblock = 1; mark = 0; first = 1; next }
        { mark = 0 }
        inblock && /^```$/ { inblock = 0; next }
        inblock {
            if (first) { printf "echo \"== README.md line %d\" >&2\n", NR; first = 0 }
            print
        }
    ' "$repo/README.md"
} > "$script"
blocks=$(grep -c '^<!-- checked -->$' "$repo/README.md")
echo "readme-check: $blocks blocks, in $work" >&2

cd "$work"
export CARGO_INSTALL_ROOT="$top/install"
export CARGO_TARGET_DIR="$repo/target"
export WEIR_RUN_DIR="$top/run"
export WEIR_CACHE_DIR="$top/components"
rm -rf "$WEIR_RUN_DIR"
mkdir -m 700 "$WEIR_RUN_DIR"
bash "$script"
echo "readme-check: all $blocks blocks ran" >&2
