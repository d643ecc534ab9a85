#!/usr/bin/env bash
# Every test of the project, on a machine with only Rust, a C compiler and Python:
#   bash scripts/test.sh
# Installs what is missing first: Debian packages (as root; otherwise it names them and stops) and
# a Python virtual environment for the model tests (HANDOFF_TEST_VENV, default
# ~/.cache/handoff-test-venv; a Debian system Python refuses pip installs outside one). Then: the
# Rust tests (real gRPC, real tract, real Redis and Prometheus tools), the model-pipeline tests, the
# proto checks (buf) and the deploy-kit checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- Debian packages
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)   # the Redis state tests start their own
command -v openssl >/dev/null || need_apt+=(openssl)             # scripts/dev-certs.sh for the TLS tests
command -v promtool >/dev/null || need_apt+=(prometheus)         # promtool: metrics lint, alert rule tests
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v chromium >/dev/null || need_apt+=(chromium)           # headless: the decision report test
command -v npm >/dev/null || need_apt+=(npm)                     # buf (proto lint, breaking check) and the Node.js example
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${need_apt[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]}; run as root or: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

# ---------------------------------------------------------------- Python environment
venv="${HANDOFF_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/handoff-test-venv}"
reqs=(models/train/requirements-test.txt models/train/requirements-smoke.txt)
stamp="$venv/.requirements.sha256"
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== Python test environment in $venv (torch is large: a minute or two the first time)"
  python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${reqs[@]/#/-r}"
  echo "$want" >"$stamp"
fi

# ---------------------------------------------------------------- Node.js example
# Built before the Rust tests, which run it against a real server (tests/service.rs).
echo "== Node.js example (npm ci, types generated from the proto, tsc)"
(cd examples/node && npm ci --silent --no-audit --no-fund && npm run --silent build)

# ---------------------------------------------------------------- tests
echo "== cargo test"
export HANDOFF_PYTHON="$venv/bin/python3"   # the Python client example's test runs with it
cargo test --locked
echo "== model pipeline tests"
"$venv/bin/python3" -m pytest -q models/train
echo "== proto (buf lint, buf breaking)"
bash scripts/check-proto.sh
echo "== deploy kit"
bash deploy/check.sh
echo "all tests passed"
