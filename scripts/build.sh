#!/usr/bin/env bash
# scripts/build.sh: a release build; the binaries land in build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
echo "built: build/bin/sluice"
