#!/usr/bin/env bash
# scripts/test.sh: the README's test command. Installs what is missing (as root), checks
# formatting, builds with clang, ASan+UBSan and -Werror, and runs every test: cmocka unit
# tests, integration tests against the real HTTPS server and a real embedded
# PostgreSQL, and the fuzz targets over their corpora. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

scripts/deps.sh --test

echo "== format (clang-format --dry-run -Werror)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

echo "== build (clang, ASan+UBSan, -Werror)"
cmake --preset test >/dev/null
cmake --build --preset test -j"$(nproc)"

echo "== tests"
# Tests bind loopback ports and run PostgreSQL clusters of their own; the parallelism
# suits two cores.
(cd build-test && ctest --output-on-failure -j2 --timeout 900)

echo "== openapi lint"
if command -v npm >/dev/null 2>&1; then
  scripts/lint-openapi.sh
else
  echo "npm is not installed: docs/openapi.yaml was not linted (apt-get install npm)" >&2
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
