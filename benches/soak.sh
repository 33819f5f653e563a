#!/usr/bin/env bash
# A soak of the redacting route: wrk for MINUTES (default 10) against 16 KB shipment lists with
# the shipped rules, sampling the gateway's RSS every minute. Memory must not grow.
#
#   benches/soak.sh [MINUTES]
set -euo pipefail
MINUTES=${1:-10}
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
make_body 16k $((16 * 1024 - 3))
mkdir -p "$WORK/www/redact"
cp "$WORK/www/16k.json" "$WORK/www/redact/"
cat > "$WORK/gw.toml" <<C
[listen]
address = "127.0.0.1:18383"
tls = false
[admin]
address = "127.0.0.1:18393"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "sqlite"
path = "$WORK/tags.db"
[[upstream]]
name = "static"
url = "http://127.0.0.1:18381"
$(bench_clients)
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
start_upstream 18381
"$GATEWAY" run --config "$WORK/gw.toml" > /dev/null & GP=$!
PIDS+=("$GP")
wait_port 18381; wait_port 18383
wrk -t1 -c64 -d"${MINUTES}m" -H "Authorization: Bearer bench-key-acme" \
  http://127.0.0.1:18383/redact/16k.json > "$WORK/wrk.out" & WRK=$!
PIDS+=("$WRK")
echo "minute rss_mib"
for m in $(seq 0 "$MINUTES"); do
  echo "$m $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$GP/status")"
  [ "$m" = "$MINUTES" ] || sleep 60
done
wait $WRK
grep -E 'Requests/sec|requests in' "$WORK/wrk.out"
