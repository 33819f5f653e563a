#!/usr/bin/env bash
# Screenshots of the two pages people use, for the docs: the recipient page as the demo serves
# it (at a phone's width) and the HTML review report of the shipped config with its samples.
# Uses Debian's Chromium (installed when missing); rerun after changing either page:
#
#   scripts/screenshots.sh        # writes docs/images/recipient-page.png, docs/images/review-report.png
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v chromium >/dev/null; then
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null
fi
cargo build --release --quiet
BIN=target/release/recipient-gateway
WORK=$(mktemp -d)
DEMO=""
cleanup() { [ -n "$DEMO" ] && kill "$DEMO" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

shot() { # size url output
  # --no-sandbox: Chromium refuses to run as root otherwise (CI containers, this script via sudo).
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --ignore-certificate-errors \
    --user-data-dir="$WORK/profile" --window-size="$1" --screenshot="$3" "$2" >/dev/null 2>&1
  echo "wrote $3"
}

# The recipient page, from the demo (the shipped config's platform name and text).
"$BIN" demo >"$WORK/demo.log" 2>&1 & DEMO=$!
for _ in $(seq 100); do
  grep -q "Ctrl-C stops the demo" "$WORK/demo.log" && break
  sleep 0.1
done
shot 412,1460 https://localhost:8443/privacy/requests docs/images/recipient-page.png

# The review picture of the shipped config, checked against its samples.
"$BIN" check --config config/gateway.toml --samples config/samples --format html >"$WORK/report.html" 2>/dev/null
shot 1360,1000 "file://$WORK/report.html" docs/images/review-report.png
