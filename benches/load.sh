#!/usr/bin/env bash
# Load comparison on loopback: the gateway and nginx as reverse proxies in front of the same nginx
# upstream serving static shipment JSON, driven by the same wrk load.
#
#   benches/load.sh                 # 1 KB and 16 KB bodies, 10 s per run
#   DURATION=30s CONNS=128 benches/load.sh
#
# Installs nginx and wrk from Debian's packages when missing (needs root). Prints rps and p99 per
# proxy and body size, and the gateway/nginx ratio. Both proxies run one worker thread/process
# pinned to nothing; the upstream and wrk share the same two cores, as on a small production node.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
STORE=${STORE:-memory}       # tag store of the gateway: memory or sqlite
CONNS=${CONNS:-64}
SIZES=${SIZES:-"1k 16k"}
UPSTREAM_PORT=18081
NGINX_PORT=18082
GATEWAY_PORT=18083
ADMIN_PORT=18093

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk (Debian packages)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked --quiet
GATEWAY=target/release/recipient-gateway

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Static bodies: a list of shipments padded to the target size.
mkdir -p "$WORK/www"
make_body() { # name bytes
  local name=$1 bytes=$2 i=0 body='{"shipments":['
  while [ ${#body} -lt "$bytes" ]; do
    [ $i -gt 0 ] && body+=','
    local customer=acme; [ $((i % 2)) -eq 1 ] && customer=globex
    body+="{\"id\":\"shp_$i\",\"tracking_number\":\"1ZBENCH$i\",\"customer_id\":\"$customer\",\"status\":\"in_transit\",\"weight_kg\":2.5,"
    body+="\"recipient\":{\"name\":\"Jane Doe $i\",\"email\":\"jane$i@example.com\",\"phone\":\"+1 415 555 0101\","
    body+="\"address\":{\"street\":\"1 Market St\",\"city\":\"San Francisco\",\"postal_code\":\"94105\",\"country\":\"US\"}}}"
    i=$((i + 1))
  done
  printf '%s]}' "$body" > "$WORK/www/$name.json"
}
for size in $SIZES; do
  make_body "$size" $(( ${size%k} * 1024 - 3 ))
done
mkdir -p "$WORK/www/redact"
cp "$WORK"/www/*.json "$WORK/www/redact/"
chmod -R a+rX "$WORK" # nginx workers drop root

cat > "$WORK/upstream.conf" <<EOF
worker_processes 1;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:$UPSTREAM_PORT; root $WORK/www; }
}
EOF
cat > "$WORK/proxy.conf" <<EOF
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffers 32 16k;
    }
  }
}
EOF
cat > "$WORK/gateway.toml" <<EOF
[listen]
address = "127.0.0.1:$GATEWAY_PORT"
tls = false
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "$STORE"
path = "$WORK/tags.db"
[[upstream]]
name = "static"
url = "http://127.0.0.1:$UPSTREAM_PORT"
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

"$NGINX" -c "$WORK/upstream.conf" -g 'daemon off;' & PIDS+=($!)
"$NGINX" -c "$WORK/proxy.conf" -g 'daemon off;' & PIDS+=($!)
"$GATEWAY" run --config "$WORK/gateway.toml" > /dev/null & PIDS+=($!)

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}
wait_port $UPSTREAM_PORT; wait_port $NGINX_PORT; wait_port $GATEWAY_PORT

# wrk's latency line values come with units; normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}
run() { # port path [header] -> "rps p99_ms"
  local out header=${3:-"X-Bench: 1"}
  wrk -t1 -c"$CONNS" -d3s -H "$header" "http://127.0.0.1:$1$2" >/dev/null 2>&1 # warm-up
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$header" "http://127.0.0.1:$1$2")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "non-2xx answers from port $1: $out" >&2
    exit 1
  fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $(to_ms "$p99")"
}

printf '\n%-6s %-9s %12s %10s\n' size proxy rps p99_ms
results=()
for size in $SIZES; do
  read -r nginx_rps nginx_p99 < <(run $NGINX_PORT "/$size.json")
  read -r gw_rps gw_p99 < <(run $GATEWAY_PORT "/$size.json")
  printf '%-6s %-9s %12.0f %10s\n' "$size" nginx "$nginx_rps" "$nginx_p99"
  printf '%-6s %-9s %12.0f %10s\n' "$size" gateway "$gw_rps" "$gw_p99"
  if [ "$size" = 16k ]; then GW16_RPS=$gw_rps; GW16_P99=$gw_p99; fi
  results+=("$(awk -v g="$gw_rps" -v n="$nginx_rps" -v gp="$gw_p99" -v np="$nginx_p99" -v s="$size" \
    'BEGIN { printf "%-6s rps gateway/nginx %.2f   p99 gateway/nginx %.2f", s, g / n, gp / np }')")
done
# The redacting route: 16 KB lists, 10 rules, half the records another customer's.
if [[ " $SIZES " == *" 16k "* ]]; then
  read -r red_rps red_p99 < <(run $GATEWAY_PORT "/redact/16k.json" "Authorization: Bearer bench-key-acme")
  printf '%-6s %-9s %12.0f %10s\n' 16k redacting "$red_rps" "$red_p99"
  results+=("$(awk -v r="$red_rps" -v g="$GW16_RPS" -v rp="$red_p99" -v gp="$GW16_P99" \
    'BEGIN { printf "16k    rps redacting/passthrough %.2f   p99 overhead %.2f ms", r / g, rp - gp }')")
fi
echo
printf '%s\n' "${results[@]}"
echo "(plain HTTP/1.1, wrk -t1 -c$CONNS -d$DURATION; tag store $STORE; gateway access log written to /dev/null)"
