#!/usr/bin/env bash
# scripts/deps.sh: installs what sluice needs on Debian 12 (as root), and creates the
# unprivileged system user that runs PostgreSQL and the gateway when started as root.
# Quiet when everything is already there. Used by quickstart.sh, test.sh and build.sh.
#   deps.sh            build and run dependencies
#   deps.sh --test     also what the tests need (clang for sanitizers and libFuzzer, cmocka)
#   deps.sh --bench    also the benchmark peers (nginx, wrk)
set -euo pipefail

want=(build-essential cmake pkg-config ca-certificates curl
      libmicrohttpd-dev libgnutls28-dev libssl-dev libsodium-dev libpq-dev libjansson-dev
      libcurl4-openssl-dev libseccomp-dev libisal-dev libopenblas-dev liblapacke-dev
      postgresql-15 postgresql-client-15 python3)
for arg in "$@"; do
  case "$arg" in
    --test) want+=(clang libclang-rt-14-dev libcmocka-dev clang-format openssl python3-numpy) ;;
    --bench) want+=(nginx-light wrk openssl python3-numpy python3-pandas python3-sklearn) ;;
    *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian package starts a default cluster of its own; sluice runs its own clusters.
if [ "$(id -u)" -eq 0 ] && ! id sluice >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice
fi
exit 0
