#!/usr/bin/env bash
# Lint the proto and check it against the previous commit's for breaking changes, with buf (from npm,
# installed into HANDOFF_BUF_DIR, default ~/.cache/handoff-buf, the first time).
#   bash scripts/check-proto.sh [REF]     # REF: what to compare with (default HEAD~1)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${HANDOFF_BUF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/handoff-buf}"
buf="$dir/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  echo "== installing buf (npm @bufbuild/buf) into $dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" @bufbuild/buf@1.75.0
fi
echo "== buf lint ($("$buf" --version))"
"$buf" lint
ref="${1:-HEAD~1}"
if git rev-parse --verify -q "$ref^{commit}" >/dev/null; then
  echo "== buf breaking against $ref"
  "$buf" breaking --against ".git#ref=$(git rev-parse "$ref"),subdir=proto"
else
  echo "== buf breaking skipped: no commit $ref in this clone" >&2
fi
echo "proto checks passed"
