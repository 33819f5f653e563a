#!/usr/bin/env bash
# Import rate: `tags import` of a platform's history into an empty store, per backend.
#
#   benches/import.sh                          # 2,000,000 shipments, SQLite and PostgreSQL
#   RECORDS=200000 STORES=sqlite benches/import.sh
#
# Each shipment has 2 record keys (id, tracking number) and 2 recipient identifiers (e-mail,
# phone), all distinct, half acme's and half globex's by `customer_id`: 8 tags and 4 recipient
# links per line. Reports per backend: records/s, the summary line, a second import of the same
# file (nothing new, the cost of checking), and the peak RSS of the import process. PostgreSQL
# runs when 127.0.0.1:5432 answers (a scratch database `gateway_import` is created and dropped).
set -euo pipefail

RECORDS=${RECORDS:-2000000}
STORES=${STORES:-"sqlite postgres"}

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

# The history: one JSON document per line, shaped as the route's upstream answers.
awk -v n="$RECORDS" 'BEGIN {
  for (i = 0; i < n; i++) {
    customer = (i % 2 == 0) ? "acme" : "globex"
    printf "{\"id\":\"shp_%09d\",\"tracking_number\":\"1ZHIST%010d\",\"customer_id\":\"%s\",\"status\":\"delivered\",\"recipient\":{\"name\":\"Person %d\",\"email\":\"person%d@history.example\",\"phone\":\"+1 415 %07d\",\"address\":{\"city\":\"San Francisco\",\"country\":\"US\"}}}\n", i, i, customer, i, i, i
  }
}' > "$WORK/history.jsonl"
echo "history: $RECORDS shipments, $(du -h "$WORK/history.jsonl" | cut -f1)"

printf '%-9s %10s %14s %9s  %s\n' store records/s recheck_rec/s rss_mib summary
for store in $STORES; do
  if ! store_config=$(fresh_store "$store" import); then
    echo "postgres: skipped (nothing answers at $PG_BASE)"
    continue
  fi
  cat > "$WORK/gateway.toml" <<EOF
[listen]
address = "127.0.0.1:0"
tls = false
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
$store_config
[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]
[[client]]
id = "globex"
kind = "customer"
name = "Globex"
api_key_sha256 = ["1111111111111111111111111111111111111111111111111111111111111111"]
[[upstream]]
name = "api"
url = "http://127.0.0.1:9"
[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "api"
records = ["\$", "\$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
EOF
  run() { # -> "summary line" and peak RSS in $WORK/rss
    /usr/bin/time -f '%M' -o "$WORK/rss" "$GATEWAY" tags import --config "$WORK/gateway.toml" \
      --route shipments "$WORK/history.jsonl" 2>/dev/null > "$WORK/out"
    head -1 "$WORK/out"
  }
  first=$(run)
  rss=$(( $(cat "$WORK/rss") / 1024 ))
  again=$(run)
  rate() { sed -n 's/.*(\([0-9]*\) records\/s).*/\1/p' <<<"$1"; }
  printf '%-9s %10s %14s %9s  %s\n' "$store" "$(rate "$first")" "$(rate "$again")" "$rss" "$first"
  [ "$store" = postgres ] && psql "$PG_BASE/postgres" -qc "DROP DATABASE gateway_import"
done
echo "(2 record keys and 2 recipient identifiers per shipment; recheck = the same file again, nothing new)"
