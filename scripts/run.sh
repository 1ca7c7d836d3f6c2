#!/usr/bin/env bash
# Runs a command inside the project environment (venv + colcon workspace + localhost-only DDS).
set -eo pipefail
# shellcheck disable=SC1091
source "$(dirname "$0")/env.sh"
exec "$@"
