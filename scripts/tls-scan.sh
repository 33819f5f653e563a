#!/usr/bin/env bash
# Scans the gateway's TLS listener with testssl (Debian package `testssl.sh`, installed here when
# missing) and fails on any finding rated above LOW. The gateway runs on freshly generated
# development certificates (`dev-certs`), whose CA is handed to testssl so the chain verifies.
#
#   scripts/tls-scan.sh            # build (release), start on a free port, scan, stop
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v testssl >/dev/null; then
  echo "testssl not found; installing Debian's testssl.sh package" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null
fi

cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/recipient-gateway dev-certs --out "$work/certs" > /dev/null
cat > "$work/gateway.toml" <<TOML
[listen]
address = "127.0.0.1:0"
tls_cert = "$work/certs/localhost.crt"
tls_key = "$work/certs/localhost.key"
[admin]
address = "127.0.0.1:0"
[keys]
tag_key = "tls-scan-only-not-a-real-key"
[store]
backend = "memory"
[[upstream]]
name = "none"
url = "http://127.0.0.1:9"
[[route]]
name = "all"
path_prefix = "/"
upstream = "none"
auth = "none"
TOML
target/release/recipient-gateway run --config "$work/gateway.toml" > "$work/log" &
pid=$!
for _ in $(seq 50); do
  port=$(grep -o '"address":"127.0.0.1:[0-9]*"' "$work/log" | head -n1 | grep -o '[0-9]*"$' | tr -d '"') || true
  [ -n "${port:-}" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the gateway did not start" >&2; cat "$work/log" >&2; exit 1; }

echo "scanning localhost:$port with testssl $(testssl --version 2>/dev/null | grep -o 'testssl.sh [0-9.]*' | head -n1)"
testssl --quiet --color 0 --warnings off --add-ca "$work/certs/ca.crt" \
  --jsonfile "$work/scan.json" "localhost:$port" > "$work/scan.txt" || true

python3 - "$work/scan.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
rank = {"OK": 0, "INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4, "WARN": 0, "DEBUG": 0}
bad = [f for f in findings if rank.get(f.get("severity", "INFO"), 0) >= 2]
low = [f for f in findings if rank.get(f.get("severity", "INFO"), 0) == 1]
for f in low:
    print(f"LOW   {f['id']}: {f['finding']}")
for f in bad:
    print(f"{f['severity']:<6}{f['id']}: {f['finding']}")
print(f"{len(findings)} checks, {len(low)} LOW, {len(bad)} above LOW")
sys.exit(1 if bad else 0)
PY
