#!/usr/bin/env bash
# Checks the Prometheus alerting rules (config/alerts.yaml) with promtool:
# syntax and their unit tests (config/alerts.test.yaml). Installs Debian's
# `prometheus` package for promtool when it is missing (`--setup` only installs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
[ "${1:-}" = --setup ] && exit 0
promtool check rules config/alerts.yaml
promtool test rules config/alerts.test.yaml
