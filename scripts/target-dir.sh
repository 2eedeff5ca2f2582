#!/usr/bin/env bash
# Prints cargo's target directory for this checkout, wherever cargo's
# configuration or CARGO_TARGET_DIR puts it. Sourced by the other scripts.
cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
