#!/usr/bin/env bash
# Tag churn: a list endpoint that returns 10 never-seen records on every response (as after
# deploying in front of an existing API), against the same endpoint returning the same 10 records,
# per store backend. Records are resolved by `controller_member`, so every record key and recipient
# is a first sighting that privacy requests will depend on.
#
#   benches/churn.sh                            # SQLite and PostgreSQL, 20 s runs
#   DURATION=60s STORES="sqlite" CACHE_ENTRIES=100000 benches/churn.sh
#
# Reports per backend: rps with fresh records against rps with repeated ones; record tags per
# second; last-seen refreshes coalesced and responses held for queue room; first sightings seen
# (the gateway's count of record tags written) against record tags in the store after a graceful
# stop; the gateway's RSS every 5 s of the fresh run. Then neighbours: acme's rps and p99 reading
# repeated records beside globex reading repeated ones, and beside globex churning fresh ones. PostgreSQL runs when 127.0.0.1:5432 answers
# (a scratch database `gateway_churn` is created and dropped).
set -euo pipefail

DURATION=${DURATION:-20s}
CACHE_ENTRIES=${CACHE_ENTRIES:-1000000}
STORES=${STORES:-"sqlite postgres"}
CONNS=${CONNS:-64}
UPSTREAM_PORT=18481
GATEWAY_PORT=18483
ADMIN_PORT=18493

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
if ! need sqlite3 || ! need psql || ! need curl; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 postgresql-client curl >/dev/null
fi

# The upstream: nginx + Lua answering 10 records per request, fresh ids and e-mail addresses per
# request under /fresh, always the same under /same; half acme's, half globex's.
chmod -R a+rX "$WORK"
{ nginx_head upstream lua; cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000;
  init_by_lua_block {
    function shipments(prefix)
      local parts = {}
      for i = 1, 10 do
        local customer = (i % 2 == 0) and "acme" or "globex"
        parts[i] = string.format('{"id":"%s-%d","customer_id":"%s","status":"in_transit",' ..
          '"recipient":{"name":"Jane Doe","email":"%s-%d@example.com","phone":"+1 415 555 0101"}}',
          prefix, i, customer, prefix, i)
      end
      ngx.header.content_type = "application/json"
      ngx.print('{"shipments":[' .. table.concat(parts, ",") .. ']}')
    end
  }
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location /fresh { content_by_lua_block { shipments(ngx.var.request_id) } }
    location /same { content_by_lua_block { shipments("same00000000000000000000000000000") } }
  }
}
EOF
} > "$WORK/upstream.conf"
"$NGINX" -c "$WORK/upstream.conf" -g 'daemon off;' & PIDS+=($!)
bench_rules

metric() { # series prefix (a name, or a name with its first labels): the sum of its series
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" 'index($1, m) == 1 { s += $2 } END { printf "%d", s }'
}
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
wrk_rps() { # path: rps
  wrk -t1 -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer bench-key-acme" \
    "http://127.0.0.1:$GATEWAY_PORT$1" | awk '/Requests\/sec/ {print $2}'
}
# Neighbours: acme reads /same while globex reads PATH at the same time, half the connections
# each. Prints acme's rps and p99 (ms).
neighbours() { # path
  wrk -t1 -c$((CONNS / 2)) -d"$DURATION" -H "Authorization: Bearer bench-key-globex" \
    "http://127.0.0.1:$GATEWAY_PORT$1" > /dev/null & local other=$!
  wrk -t1 -c$((CONNS / 2)) -d"$DURATION" --latency -H "Authorization: Bearer bench-key-acme" \
    "http://127.0.0.1:$GATEWAY_PORT/same" | awk '
      /Requests\/sec/ { rps = $2 }
      $1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                    else if (v ~ /ms$/) { sub(/ms$/, "", v) } else { sub(/s$/, "", v); v *= 1000 }
                    p99 = v }
      END { printf "%.0f %.2f", rps, p99 }'
  wait $other
}

printf '%-9s %9s %9s %6s %11s %10s %7s %12s %12s %6s  %s\n' store same_rps fresh_rps ratio tags_per_s coalesced waits first_seen persisted lost rss_mib_every_5s
NEIGHBOURS=""
for store in $STORES; do
  if ! store_config=$(fresh_store "$store" churn); then
    echo "postgres: skipped (nothing answers at $PG_BASE)"
    continue
  fi
  cat > "$WORK/gateway.toml" <<EOF
[listen]
address = "127.0.0.1:$GATEWAY_PORT"
tls = false
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
$store_config
cache_entries = $CACHE_ENTRIES
[[upstream]]
name = "lua"
url = "http://127.0.0.1:$UPSTREAM_PORT"
$(bench_clients)
[[route]]
name = "churn"
path_prefix = "/"
upstream = "lua"
records = ["\$.shipments[*]"]
record_keys = ["id"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
rules = ["rules.toml"]
EOF
  "$GATEWAY" run --config "$WORK/gateway.toml" > /dev/null & GP=$!
  wait_port $UPSTREAM_PORT; wait_port $GATEWAY_PORT
  same=$(wrk_rps /same)
  seen_before=$(metric 'gateway_tags_written_total{kind="record"')
  rss=""
  (wrk_rps /fresh > "$WORK/fresh.rps") & WRK=$!
  [ -n "${PERF_OUT:-}" ] && (sleep 5; perf record -F 1000 -g -o "$PERF_OUT" -p $GP -- sleep 8 >/dev/null 2>&1) &
  while kill -0 $WRK 2>/dev/null; do rss+="$(rss_mib $GP) "; sleep 5; done
  fresh=$(cat "$WORK/fresh.rps")
  seen=$(( $(metric 'gateway_tags_written_total{kind="record"') - seen_before ))
  coalesced=$(metric gateway_tag_refreshes_coalesced_total)
  waits=$(metric gateway_tag_queue_waits_total)
  # Acme beside a neighbour reading repeated records, then beside one churning fresh ones.
  read -r quiet_rps quiet_p99 <<<"$(neighbours /same)"
  read -r busy_rps busy_p99 <<<"$(neighbours /fresh)"
  seen_neighbours=$(( $(metric 'gateway_tags_written_total{kind="record"') - seen_before - seen ))
  NEIGHBOURS+=$(printf '%-9s %13s %12s %13s %12s %9s %9s' "$store" "$quiet_rps" "$quiet_p99" \
    "$busy_rps" "$busy_p99" "$(awk -v a="$busy_rps" -v b="$quiet_rps" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="$busy_p99" -v b="$quiet_p99" 'BEGIN { printf "%.2f", a / b }')")$'\n'
  kill -TERM $GP; wait $GP || true
  case $store in
    sqlite) stored=$(sqlite3 "$WORK/churn.db" "SELECT count(*) FROM record_tags") ;;
    postgres) stored=$(psql "$PG_BASE/gateway_churn" -tAc "SELECT count(*) FROM record_tags")
              psql "$PG_BASE/postgres" -qc "DROP DATABASE gateway_churn" ;;
  esac
  persisted=$((stored - 10 - seen_neighbours)) # the 10 repeated records of /same
  secs=${DURATION%s}
  printf '%-9s %9.0f %9.0f %6.2f %11.0f %10s %7s %12s %12s %6s  %s\n' "$store" "$same" "$fresh" \
    "$(awk -v a="$fresh" -v b="$same" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v n="$persisted" -v s="$secs" 'BEGIN { print n / s }')" \
    "$coalesced" "$waits" "$seen" "$persisted" $((seen - persisted)) "$rss"
done
echo "(wrk -t1 -c$CONNS, $DURATION per run; 10 records per response; tags_per_s counts record tags persisted; lost = first sightings seen but not in the store after a graceful stop)"
echo
echo "Neighbours: acme reads repeated records (-c$((CONNS / 2))) beside globex reading repeated ones, then fresh ones (-c$((CONNS / 2)))"
printf '%-9s %13s %12s %13s %12s %9s %9s\n' store acme_rps_same acme_p99_ms acme_rps_churn acme_p99_ms rps_ratio p99_ratio
printf '%s' "$NEIGHBOURS"
