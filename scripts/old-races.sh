#!/usr/bin/env bash
# Issue 16's proof: the race tests of tests/api/races.rs fail on the code
# before "one place decides every write" (commit aefee42), where a resolve
# wrote its ops one commit at a time, a deactivate was a read-modify-write
# under the API's edit lock and the engine's reverse replication wrote the
# policy back unchecked.
#
#   scripts/old-races.sh [TEST_NAME...]
#
# Checks out aefee42 in a temporary worktree, adds this checkout's
# tests/api/races.rs (as tests/api_races.rs) with the test support ported to the old APIs
# (scripts/old-races/support.patch: tests only, nothing under src/), runs
# each race test on its own and succeeds only if every one of them FAILS
# there. Copies target/ in first when there is one (saves the dependency
# build). Not part of CI: it builds a second tree.
set -euo pipefail
cd "$(dirname "$0")/.."
here="$PWD"
old=aefee42
tests=("$@")
if [ "${#tests[@]}" -eq 0 ]; then
    tests=(
        resolves_racing_peer_writes_apply_only_to_the_sides_they_saw
        deactivates_racing_patches_lose_no_acknowledged_slot
        reverse_replication_racing_if_match_patches_keeps_every_acknowledged_policy
    )
fi
tmp="$(mktemp -d)"
dir="$tmp/old"
cleanup() { git -C "$here" worktree remove --force "$dir" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
git worktree add --detach "$dir" "$old" >/dev/null
[ -d target ] && cp -a target "$dir/target"
(
    cd "$dir"
    git apply "$here/scripts/old-races/support.patch"
    sed 's|^use crate::harness::\*;|#[path = "races_support/mod.rs"]\nmod harness;\nuse harness::*;|' \
        "$here/tests/api/races.rs" > tests/api_races.rs
    cargo test --release --test api_races --no-run
)
failed=0
for t in "${tests[@]}"; do
    if (cd "$dir" && cargo test --release --test api_races -- --exact "$t" 2>&1 | tee "$tmp/$t.log" | grep -E "panicked|^test "); then :; fi
    if grep -q "^test $t ... FAILED" "$tmp/$t.log"; then
        echo "ok: $t fails on $old: $(grep -A1 panicked "$tmp/$t.log" | tail -1)"
    else
        echo "NOT SHOWN: $t passes on $old"
        failed=1
    fi
done
exit "$failed"
