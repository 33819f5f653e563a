#!/usr/bin/env bash
# Load comparison on loopback: the gateway beside what users would run instead, in front of the same
# nginx upstream serving static shipment JSON, driven by the same wrk load.
#
#   benches/load.sh                 # 1 KB, 16 KB, 256 KB; plain and TLS; 3 alternating 6 s rounds
#   ROUNDS=5 DURATION=10s CONNS=128 SIZES="16k" MODES="tls" benches/load.sh
#
# The peers:
# - passthrough: nginx (one worker: two were slower on 2 cores; upstream keep-alive,
#   `proxy_buffers 32 16k`) and haproxy (its default threads, `http-reuse always`) against the
#   gateway's passthrough route;
# - redacting: nginx with the Lua module and cjson, a `body_filter` that redacts the same fields of
#   the records of another customer as the gateway's ten rules (the data plane Kong's response
#   transformers run on), against the gateway's redacting route. Before any timing, both must give
#   the same JSON for every size.
#
# Every proxy writes one access line per request (nginx buffered, 32k; haproxy to stdout; the
# gateway per serving thread), all to /dev/null. Each round runs every peer once, in turn, after
# a 2 s warm-up; the table shows the median rps, p99 and CPU microseconds per request over the
# rounds (utime + stime of the proxy's processes, nginx's master and workers together, over the
# measured run, divided by the requests wrk counted), and the proxy's resident memory after the
# last. Installs nginx,
# the Lua module, cjson, haproxy and wrk from Debian's packages when missing (needs root). The
# upstream and wrk share the same cores.
set -euo pipefail

DURATION=${DURATION:-6s}
ROUNDS=${ROUNDS:-3}
STORE=${STORE:-memory}       # tag store of the gateway: memory or sqlite
CONNS=${CONNS:-64}
SIZES=${SIZES:-"1k 16k 256k"}
MODES=${MODES:-"plain tls"}
UPSTREAM_PORT=18081
NGINX_PORT=18082
NGINX_TLS_PORT=18084
GATEWAY_PORT=18083
GATEWAY_TLS_PORT=18085
HAPROXY_PORT=18086
HAPROXY_TLS_PORT=18087
ADMIN_PORT=18093
ADMIN_TLS_PORT=18095

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

bench_bodies $SIZES
"$GATEWAY" dev-certs --out "$WORK/certs" >/dev/null
cat "$WORK/certs/localhost.crt" "$WORK/certs/localhost.key" > "$WORK/certs/haproxy.pem"

# The Kong-style peer's redaction: for records whose customer_id is not the caller's, the fields
# the gateway's ten rules name (redact, mask every character, remove; date_of_birth at any depth).
cat > "$WORK/redact.lua" <<'LUA'
local cjson = require "cjson"
local M = {}
local callers = { ["Bearer bench-key-acme"] = "acme", ["Bearer bench-key-globex"] = "globex" }
function M.caller(authorization) return callers[authorization or ""] end
local function remove_deep(t, name)
  if type(t) ~= "table" then return end
  t[name] = nil
  for _, v in pairs(t) do remove_deep(v, name) end
end
local function redact(t, name) if t and t[name] ~= nil then t[name] = "[REDACTED]" end end
local function record(r)
  local recipient = r.recipient
  if type(recipient) == "table" then
    redact(recipient, "email"); redact(recipient, "phone"); redact(recipient, "name")
    redact(recipient, "company")
    local address = recipient.address
    if type(address) == "table" then
      redact(address, "street"); redact(address, "street2")
      if type(address.postal_code) == "string" then
        address.postal_code = string.rep("*", #address.postal_code)
      elseif address.postal_code ~= nil then
        address.postal_code = "[REDACTED]"
      end
      address.geo = nil
    end
  end
  redact(r, "delivery_notes")
  remove_deep(r, "date_of_birth")
end
function M.body(text, caller)
  local doc = cjson.decode(text)
  for _, r in ipairs(doc.shipments or {}) do
    if r.customer_id ~= caller then record(r) end
  end
  return cjson.encode(doc)
end
return M
LUA

{ nginx_head proxy lua; cat <<EOF
http {
  # One JSON access line per request, as the gateway writes, buffered as production nginx is.
  log_format json escape=json '{"ts":"\$time_iso8601","msg":"request","method":"\$request_method","path":"\$uri","status":\$status,"duration_ms":\$request_time,"request_id":"\$request_id"}';
  access_log /dev/null json buffer=32k flush=1s;
  keepalive_requests 1000000;
  lua_package_path "$WORK/?.lua;;";
  lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
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
    location /redact/ {
      access_by_lua_block {
        ngx.ctx.caller = require("redact").caller(ngx.var.http_authorization)
        if not ngx.ctx.caller then return ngx.exit(401) end
      }
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_buffers 32 16k;
      header_filter_by_lua_block { ngx.header.content_length = nil }
      body_filter_by_lua_block {
        local ctx = ngx.ctx
        ctx.parts = ctx.parts or {}
        if ngx.arg[1] ~= "" then table.insert(ctx.parts, ngx.arg[1]) end
        if ngx.arg[2] then
          ngx.arg[1] = require("redact").body(table.concat(ctx.parts), ctx.caller)
        else
          ngx.arg[1] = nil
        end
      }
    }
  }
}
EOF
} > "$WORK/proxy.conf"
cat > "$WORK/haproxy.cfg" <<EOF
global
  maxconn 8000
  pidfile $WORK/haproxy.pid
  # One access line per request to stdout (/dev/null), as the gateway writes.
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend bench
  bind 127.0.0.1:$HAPROXY_PORT
  bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/certs/haproxy.pem alpn http/1.1
  default_backend static
backend static
  server upstream 127.0.0.1:$UPSTREAM_PORT maxconn 256
EOF
cat > "$WORK/gateway-common.toml" <<EOF
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "$STORE"
path = "$WORK/tags.db"
$(bench_routes $UPSTREAM_PORT)
EOF
bench_rules

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
haproxy -q -f "$WORK/haproxy.cfg" > /dev/null & PIDS+=($!); HAPROXY_PID=$!
"$GATEWAY" run --config "$WORK/gateway-plain.toml" > /dev/null & PIDS+=($!); GW_PLAIN_PID=$!
"$GATEWAY" run --config "$WORK/gateway-tls.toml" > /dev/null & PIDS+=($!); GW_TLS_PID=$!

for port in $UPSTREAM_PORT $NGINX_PORT $HAPROXY_PORT $GATEWAY_PORT $GATEWAY_TLS_PORT; do wait_port "$port"; done

# The two redacting peers must agree before either is timed.
for size in $SIZES; do
  curl -sf -H "Authorization: Bearer bench-key-acme" "http://127.0.0.1:$GATEWAY_PORT/redact/$size.json" > "$WORK/gateway-$size.out"
  curl -sf -H "Authorization: Bearer bench-key-acme" "http://127.0.0.1:$NGINX_PORT/redact/$size.json" > "$WORK/lua-$size.out"
  python3 - "$WORK/gateway-$size.out" "$WORK/lua-$size.out" "$WORK/www/$size.json" <<'PY'
import json, sys
gateway, lua, original = (json.load(open(p)) for p in sys.argv[1:4])
assert gateway == lua, f"the redacting peers disagree on {sys.argv[3]}"
assert gateway != original, "nothing was redacted"
assert any(r["recipient"]["email"] == "[REDACTED]" for r in gateway["shipments"])
PY
done
echo "redacting peers agree on every size" >&2

# Resident memory in MiB of a process and its children (nginx's master and worker).
rss_mib() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo $((total / 1024))
}
row() { printf '%-6s %-6s %-18s %10.0f %8s %10s %8s\n' "$@"; }
printf '\n%-6s %-6s %-18s %10s %8s %10s %8s\n' mode size proxy rps p99_ms cpu_us_req rss_mib
results=()
ACME="Authorization: Bearer bench-key-acme"
for mode in $MODES; do
  if [ "$mode" = tls ]; then
    base_nginx=https://127.0.0.1:$NGINX_TLS_PORT base_haproxy=https://127.0.0.1:$HAPROXY_TLS_PORT
    base_gw=https://127.0.0.1:$GATEWAY_TLS_PORT gw_pid=$GW_TLS_PID
  else
    base_nginx=http://127.0.0.1:$NGINX_PORT base_haproxy=http://127.0.0.1:$HAPROXY_PORT
    base_gw=http://127.0.0.1:$GATEWAY_PORT gw_pid=$GW_PLAIN_PID
  fi
  for size in $SIZES; do
    # name|URL|header|PID whose memory is shown
    peers=(
      "nginx|$base_nginx/$size.json|X-Bench: 1|$NGINX_PID"
      "haproxy|$base_haproxy/$size.json|X-Bench: 1|$HAPROXY_PID"
      "gateway|$base_gw/$size.json|X-Bench: 1|$gw_pid"
      "nginx+lua-redacting|$base_nginx/redact/$size.json|$ACME|$NGINX_PID"
      "gateway-redacting|$base_gw/redact/$size.json|$ACME|$gw_pid"
    )
    declare -A rps=() p99=() cpu=() rss=()
    for peer in "${peers[@]}"; do
      IFS='|' read -r name url header pid <<<"$peer"
      wrk -t1 -c"$CONNS" -d2s -H "$header" "$url" >/dev/null 2>&1 # warm-up
    done
    for _ in $(seq "$ROUNDS"); do
      for peer in "${peers[@]}"; do
        IFS='|' read -r name url header pid <<<"$peer"
        read -r r p c < <(wrk_once "$url" "$header" "$pid")
        rps[$name]+="$r "; p99[$name]+="$p "; cpu[$name]+="$c "
        rss[$name]=$(rss_mib "$pid")
      done
    done
    declare -A m_rps=() m_p99=() m_cpu=()
    for peer in "${peers[@]}"; do
      name=${peer%%|*}
      m_rps[$name]=$(median <<<"${rps[$name]}")
      m_p99[$name]=$(median <<<"${p99[$name]}")
      m_cpu[$name]=$(median <<<"${cpu[$name]}")
      row "$mode" "$size" "$name" "${m_rps[$name]}" "${m_p99[$name]}" "${m_cpu[$name]}" "${rss[$name]}"
    done
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
    # Throughput ratios (above 1: the gateway serves more) and CPU ratios (the gateway's CPU per
    # request over the peer's: below 1, the gateway is cheaper).
    results+=("$(printf '%-6s %-6s gateway/nginx rps %s cpu %s (p99 %s vs %s ms)   gateway/haproxy rps %s cpu %s (p99 %s ms)   redacting gateway/lua rps %s cpu %s (p99 %s vs %s ms)' \
      "$mode" "$size" \
      "$(ratio "${m_rps[gateway]}" "${m_rps[nginx]}")" "$(ratio "${m_cpu[gateway]}" "${m_cpu[nginx]}")" \
      "${m_p99[gateway]}" "${m_p99[nginx]}" \
      "$(ratio "${m_rps[gateway]}" "${m_rps[haproxy]}")" "$(ratio "${m_cpu[gateway]}" "${m_cpu[haproxy]}")" \
      "${m_p99[haproxy]}" \
      "$(ratio "${m_rps[gateway-redacting]}" "${m_rps[nginx+lua-redacting]}")" \
      "$(ratio "${m_cpu[gateway-redacting]}" "${m_cpu[nginx+lua-redacting]}")" \
      "${m_p99[gateway-redacting]}" "${m_p99[nginx+lua-redacting]}")")
    unset rps p99 cpu rss m_rps m_p99 m_cpu
  done
done
echo
printf '%s\n' "${results[@]}"
echo "(wrk -t1 -c$CONNS, $ROUNDS alternating rounds of $DURATION, medians; keep-alive; tag store $STORE; every proxy writes its access log to /dev/null; cpu_us_req = utime+stime of the proxy's processes over the run / requests served; rss after the last round)"
