#!/usr/bin/env bash
# A soak of the redacting route: wrk for MINUTES (default 10) against 16 KB shipment lists with
# the shipped rules, sampling the gateway's RSS every minute. Memory must not grow.
#
#   benches/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
cargo build --release --locked --quiet
W=$(mktemp -d)
trap 'kill "${GP:-}" "${NP:-}" "${WRK:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
# The same bodies as load.sh: half acme's records, half globex's.
eval "$(sed -n '/^make_body()/,/^}/p' benches/load.sh)"
WORK=$W
mkdir -p "$W/www/redact"
make_body 16k $((16 * 1024 - 3))
cp "$W/www/16k.json" "$W/www/redact/"
chmod -R a+rX "$W"
cat > "$W/up.conf" <<C
worker_processes 1; pid $W/up.pid; error_log $W/up.err warn; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; default_type application/json;
       server { listen 127.0.0.1:18381; root $W/www; } }
C
cat > "$W/gw.toml" <<C
[listen]
address = "127.0.0.1:18383"
tls = false
[admin]
address = "127.0.0.1:18393"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "sqlite"
path = "$W/tags.db"
[[upstream]]
name = "static"
url = "http://127.0.0.1:18381"
[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["$(printf bench-key-acme | sha256sum | cut -d' ' -f1)"]
[[client]]
id = "globex"
kind = "customer"
name = "Globex"
api_key_sha256 = ["$(printf bench-key-globex | sha256sum | cut -d' ' -f1)"]
[[route]]
name = "redacting"
path_prefix = "/redact"
upstream = "static"
records = ["\$", "\$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
rules = ["$PWD/config/rules/recipient.toml", "$PWD/config/rules/sensitive.toml", "$PWD/config/rules/analytics.toml"]
C
nginx -c "$W/up.conf" -g 'daemon off;' & NP=$!
target/release/recipient-gateway run --config "$W/gw.toml" > /dev/null & GP=$!
sleep 1
wrk -t1 -c64 -d"${MINUTES}m" -H "Authorization: Bearer bench-key-acme" \
  http://127.0.0.1:18383/redact/16k.json > "$W/wrk.out" & WRK=$!
echo "minute rss_mib"
for m in $(seq 0 "$MINUTES"); do
  echo "$m $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$GP/status")"
  [ "$m" = "$MINUTES" ] || sleep 60
done
wait $WRK
grep -E 'Requests/sec|requests in' "$W/wrk.out"
