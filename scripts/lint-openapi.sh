#!/usr/bin/env bash
# Lints docs/openapi.yaml with Redocly's "recommended" rules and fails on any error
# or warning. Redocly's CLI is installed with npm into a cache directory outside the
# repository (nothing is written into the work tree).
#
# Environment:
#   REDOCLY_DIR      install directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/sluice-redocly)
#   REDOCLY_VERSION  @redocly/cli version (default 1.34.20; 1.34.21 depends on a
#                    package version the registry does not serve)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
spec="docs/openapi.yaml"
version=${REDOCLY_VERSION:-1.34.20}
dir=${REDOCLY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-redocly}

# No telemetry and no update check: the only network this needs is the npm registry.
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "lint-openapi: node and npm are required (Debian: apt-get install nodejs npm)" >&2
    exit 2
fi

installed_version() {
    node -e 'try { console.log(require(process.argv[1]).version) } catch (e) {}' \
        "$dir/node_modules/@redocly/cli/package.json"
}

if [[ "$(installed_version)" != "$version" ]]; then
    echo "lint-openapi: installing @redocly/cli@$version into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error \
        "@redocly/cli@$version" >&2
fi

cd "$repo_root"

redocly() {
    npx --no-install --prefix "$dir" redocly "$@"
}

# Human-readable report; exits non-zero on errors.
redocly lint "$spec" --extends=recommended --max-problems=1000

# Redocly exits 0 on warnings only; count them and fail on any.
totals=$(redocly lint "$spec" --extends=recommended --format=json 2>/dev/null |
    node -e '
        let s = "";
        process.stdin.on("data", (d) => (s += d));
        process.stdin.on("end", () => {
            const t = JSON.parse(s).totals;
            console.log(`${t.errors} ${t.warnings}`);
        });')
read -r errors warnings <<<"$totals"
if [[ "$errors" != 0 || "$warnings" != 0 ]]; then
    echo "lint-openapi: $errors error(s), $warnings warning(s) in $spec" >&2
    exit 1
fi
echo "lint-openapi: $spec is clean (0 errors, 0 warnings)"
