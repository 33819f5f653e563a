#!/usr/bin/env bash
# Load comparison on loopback: the gateway and nginx as reverse proxies in front of the same nginx
# upstream serving static shipment JSON, driven by the same wrk load.
#
#   benches/load.sh                 # 1 KB, 16 KB, 256 KB; plain and TLS; 10 s per run
#   DURATION=30s CONNS=128 SIZES="16k" MODES="tls" benches/load.sh
#
# Installs nginx and wrk from Debian's packages when missing (needs root). Prints, per mode (plain
# HTTP/1.1 or TLS terminated by the proxy), body size and proxy: rps, p50, p99 and the proxy's
# resident memory after the run; then the gateway/nginx ratios and the redacting route's ratio to
# the gateway's own passthrough. nginx runs one worker (two were slower on 2 cores) with upstream
# keep-alive, `keepalive_requests` high and `proxy_buffers 32 16k`; the gateway runs its default
# tokio runtime. The upstream (nginx serving static shipment JSON) and wrk share the same cores.
set -euo pipefail

DURATION=${DURATION:-10s}
STORE=${STORE:-memory}       # tag store of the gateway: memory or sqlite
CONNS=${CONNS:-64}
SIZES=${SIZES:-"1k 16k 256k"}
MODES=${MODES:-"plain tls"}
UPSTREAM_PORT=18081
NGINX_PORT=18082
NGINX_TLS_PORT=18084
GATEWAY_PORT=18083
GATEWAY_TLS_PORT=18085
ADMIN_PORT=18093
ADMIN_TLS_PORT=18095

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

for size in $SIZES; do
  make_body "$size" $(( ${size%k} * 1024 - 3 ))
done
mkdir -p "$WORK/www/redact"
cp "$WORK"/www/*.json "$WORK/www/redact/"
"$GATEWAY" dev-certs --out "$WORK/certs" >/dev/null
cat > "$WORK/proxy.conf" <<EOF
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; keepalive_requests 1000000; }
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_certificate $WORK/certs/localhost.crt;
  ssl_certificate_key $WORK/certs/localhost.key;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffers 32 16k;
    }
  }
}
EOF
cat > "$WORK/gateway-common.toml" <<EOF
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "$STORE"
path = "$WORK/tags.db"
[[upstream]]
name = "static"
url = "http://127.0.0.1:$UPSTREAM_PORT"
$(bench_clients)
[[route]]
name = "passthrough"
path_prefix = "/"
upstream = "static"
auth = "none"
[[route]]
name = "redacting"
path_prefix = "/redact"
upstream = "static"
records = ["\$", "\$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
rules = ["rules.toml"]
EOF
# Ten rules for a non-controller's view: half the records (globex's) are redacted for acme.
for spec in "email:\$.recipient.email:redact" "phone:\$.recipient.phone:redact" "name:\$.recipient.name:redact" \
            "street:\$.recipient.address.street:redact" "street2:\$.recipient.address.street2:redact" \
            "postal:\$.recipient.address.postal_code:mask" "company:\$.recipient.company:redact" \
            "notes:\$.delivery_notes:redact" "dob:\$..date_of_birth:remove" "geo:\$.recipient.address.geo:remove"; do
  IFS=: read -r id path action <<<"$spec"
  cat >> "$WORK/rules.toml" <<EOF
[[rule]]
id = "$id"
path = "$path"
action = "$action"
category = "user"
reason = "benchmark"
when.caller = "not_controller"
EOF
done

# One gateway per mode, the same config behind different listeners.
printf '[listen]\naddress = "127.0.0.1:%s"\ntls = false\n[admin]\naddress = "127.0.0.1:%s"\n' \
  $GATEWAY_PORT $ADMIN_PORT > "$WORK/gateway-plain.toml"
printf '[listen]\naddress = "127.0.0.1:%s"\ntls_cert = "%s"\ntls_key = "%s"\n[admin]\naddress = "127.0.0.1:%s"\n' \
  $GATEWAY_TLS_PORT "$WORK/certs/localhost.crt" "$WORK/certs/localhost.key" $ADMIN_TLS_PORT > "$WORK/gateway-tls.toml"
cat "$WORK/gateway-common.toml" >> "$WORK/gateway-plain.toml"
cat "$WORK/gateway-common.toml" >> "$WORK/gateway-tls.toml"
sed -i "s|^path = \"$WORK/tags.db\"|path = \"$WORK/tags-tls.db\"|" "$WORK/gateway-tls.toml"

start_upstream $UPSTREAM_PORT
"$NGINX" -c "$WORK/proxy.conf" -g 'daemon off;' & PIDS+=($!); NGINX_PID=$!
"$GATEWAY" run --config "$WORK/gateway-plain.toml" > /dev/null & PIDS+=($!); GW_PLAIN_PID=$!
"$GATEWAY" run --config "$WORK/gateway-tls.toml" > /dev/null & PIDS+=($!); GW_TLS_PID=$!

wait_port $UPSTREAM_PORT; wait_port $NGINX_PORT; wait_port $GATEWAY_PORT; wait_port $GATEWAY_TLS_PORT

# wrk's latency line values come with units; normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}
# Resident memory in MiB of a process and its children (nginx's master and worker).
rss_mib() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo $((total / 1024))
}
run() { # url pid [header] -> "rps p50_ms p99_ms rss_mib"
  local out header=${3:-"X-Bench: 1"}
  wrk -t1 -c"$CONNS" -d3s -H "$header" "$1" >/dev/null 2>&1 # warm-up
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$header" "$1")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "non-2xx answers from $1: $out" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(rss_mib "$2")"
}

row() { printf '%-6s %-6s %-10s %10.0f %8s %8s %8s\n' "$@"; }
printf '\n%-6s %-6s %-10s %10s %8s %8s %8s\n' mode size proxy rps p50_ms p99_ms rss_mib
results=()
for mode in $MODES; do
  if [ "$mode" = tls ]; then
    scheme=https; nginx_port=$NGINX_TLS_PORT; gw_port=$GATEWAY_TLS_PORT; gw_pid=$GW_TLS_PID
  else
    scheme=http; nginx_port=$NGINX_PORT; gw_port=$GATEWAY_PORT; gw_pid=$GW_PLAIN_PID
  fi
  for size in $SIZES; do
    read -r n_rps n_p50 n_p99 n_rss < <(run "$scheme://127.0.0.1:$nginx_port/$size.json" "$NGINX_PID")
    read -r g_rps g_p50 g_p99 g_rss < <(run "$scheme://127.0.0.1:$gw_port/$size.json" "$gw_pid")
    row "$mode" "$size" nginx "$n_rps" "$n_p50" "$n_p99" "$n_rss"
    row "$mode" "$size" gateway "$g_rps" "$g_p50" "$g_p99" "$g_rss"
    results+=("$(awk -v g="$g_rps" -v n="$n_rps" -v gp="$g_p99" -v np="$n_p99" -v s="$size" -v m="$mode" \
      'BEGIN { printf "%-6s %-6s passthrough  rps gateway/nginx %.2f   p99 gateway/nginx %.2f", m, s, g / n, gp / np }')")
    # The redacting route: the same list, 10 rules, half the records another customer's.
    if [ "$size" = 16k ]; then
      read -r r_rps r_p50 r_p99 r_rss < <(run "$scheme://127.0.0.1:$gw_port/redact/16k.json" "$gw_pid" "Authorization: Bearer bench-key-acme")
      row "$mode" "$size" redacting "$r_rps" "$r_p50" "$r_p99" "$r_rss"
      results+=("$(awk -v r="$r_rps" -v g="$g_rps" -v rp="$r_p99" -v gp="$g_p99" -v m="$mode" \
        'BEGIN { printf "%-6s 16k    redacting    rps redacting/passthrough %.2f   p99 overhead %.2f ms", m, r / g, rp - gp }')")
    fi
  done
done
echo
printf '%s\n' "${results[@]}"
echo "(wrk -t1 -c$CONNS -d$DURATION, keep-alive; tag store $STORE; gateway access log written to /dev/null; rss after each run)"
