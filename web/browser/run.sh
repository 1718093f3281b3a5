#!/usr/bin/env bash
# Browser test of the shenpi UI (web/browser/test.mjs) in Debian's headless Chromium, driven by
# playwright-core from npm. Builds the binary, starts `shenpi serve --demo` on a scratch SQLite
# database on a loopback port, runs the test, stops the server. Screenshots: web/tests/artifacts/.
# Installs what is missing (chromium via apt, playwright-core via npm) so CI can call it as is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${SHENPI_BROWSER_PORT:-18080}"
clock_start="${SHENPI_CLOCK_START:-2026-03-02T10:00:00+08:00}"

# Chromium, and a CJK font so the Chinese pages render as text in the screenshots.
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ] || ! fc-list 2>/dev/null | grep -qiE "wqy|noto.*cjk"; then
  echo "== installing chromium and a CJK font"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei) >/dev/null
fi
if ! command -v node >/dev/null; then
  echo "node is required (apt-get install nodejs npm)" >&2
  exit 2
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "== npm install playwright-core"
  (cd "$here" && npm install --no-audit --no-fund --silent)
fi

echo "== building shenpi"
(cd "$root" && cargo build -q -p shenpi-web --bin shenpi)
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/shenpi"

work="$(mktemp -d)"
log="$work/server.log"
"$bin" serve --demo --db "sqlite://$work/browser.db" --workflows "$root/workflows" \
  --bind "127.0.0.1:$port" --clock-start "$clock_start" >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.2
done

echo "== browser test"
status=0
SHENPI_URL="http://127.0.0.1:$port" SHENPI_CLOCK_START="$clock_start" node "$here/test.mjs" || status=$?
if [ "$status" -ne 0 ]; then
  echo "---- server log ----" >&2
  tail -50 "$log" >&2
fi
exit "$status"
