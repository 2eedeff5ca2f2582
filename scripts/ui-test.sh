#!/usr/bin/env bash
# The dashboard (/ui/) in a real browser: Debian's chromium driven by
# playwright-core (tests/ui/dashboard.mjs) against three `drengine run`
# processes and one storpool-emulator, from `drengine devnet --configs-only`
# on free ports. It stops them (and the browser) on exit, even on failure.
#
# Installs what it needs when missing: Debian's `chromium` (and `nodejs`,
# `npm`) with apt, and playwright-core from npm (the version pinned in
# tests/ui/package.json) into the cargo target directory.
#
#   scripts/ui-test.sh            # build drengine and the emulator, run
#   scripts/ui-test.sh --setup    # only install
#   DRENGINE_SKIP_BUILD=1 scripts/ui-test.sh   # use the binaries already built
#
# Screenshots: $(scripts/target-dir.sh)/ui-test/screenshots/*.png. The last
# line is `ui: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

target="$(scripts/target-dir.sh)"
dir="$target/ui-test"

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    # scripts/test.sh runs the other installs (check-alerts.sh's apt-get) beside
    # this one: wait for apt's locks instead of failing on them.
    apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)
    for attempt in 1 2 3 4 5; do
        "${apt[@]}" update && break
        [ "$attempt" = 5 ] && exit 1
        sleep "$attempt"
    done
    "${apt[@]}" install -y --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$dir"
if [ ! -f "$dir/node_modules/playwright-core/package.json" ] || ! cmp -s tests/ui/package.json "$dir/package.json"; then
    cp tests/ui/package.json "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
fi
[ "${1:-}" = --setup ] && exit 0

# scripts/test.sh sets DRENGINE_SKIP_BUILD: its `cargo test` has just built every binary.
[ -n "${DRENGINE_SKIP_BUILD:-}" ] ||
    cargo build --release --quiet --bin drengine --bin storpool-emulator

work="$(mktemp -d)"
cleanup() {
    # The test stops what it started; this is for a test that was killed.
    for f in "$work"/*.pid; do
        [ -e "$f" ] || continue
        kill -KILL "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

rm -rf "$dir/screenshots"
UI_TEST_DIR="$dir" UI_WORK="$work" \
    UI_DRENGINE="$target/release/drengine" UI_EMULATOR="$target/release/storpool-emulator" \
    node tests/ui/dashboard.mjs
