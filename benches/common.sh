# Shared by the benchmark scripts (sourced, not run): the build, a work folder cleaned up on exit,
# the nginx upstream serving static shipment JSON, the bench customers and a port wait.
# Callers set `set -euo pipefail` and add the PIDs of what they start to PIDS.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
need() { command -v "$1" >/dev/null 2>&1; }
# nginx with the Lua module and cjson is the Kong-style redacting peer; haproxy a second
# passthrough peer. Debian's packages, installed when missing (needs root).
if ! need nginx || ! need wrk || ! need haproxy || [ ! -e /usr/share/nginx/modules/ngx_http_lua_module.so ]; then
  echo "installing nginx (with the Lua module and cjson), haproxy and wrk (Debian packages)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-http-lua lua-cjson \
    haproxy wrk >/dev/null
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

# A list of shipments padded to about BYTES, written to $WORK/www/NAME.json: half the records
# belong to acme, half to globex.
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
  mkdir -p "$WORK/www"
  printf '%s]}' "$body" > "$WORK/www/$name.json"
}

# Shipment lists of each size (`1k`, `16k`, `256k`…) as NAME.json, also under /redact/ for the
# redacting route.
bench_bodies() { # size...
  local size
  for size in "$@"; do
    make_body "$size" $(( ${size%k} * 1024 - 3 ))
  done
  mkdir -p "$WORK/www/redact"
  cp "$WORK"/www/*.json "$WORK/www/redact/"
}

# The head of every bench nginx config: one worker, its pid and error log in $WORK under NAME,
# and the Lua modules when asked for.
nginx_head() { # name [lua]
  if [ "${2:-}" = lua ]; then
    echo "load_module /usr/share/nginx/modules/ndk_http_module.so;"
    echo "load_module /usr/share/nginx/modules/ngx_http_lua_module.so;"
  fi
  cat <<C
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1.err warn;
events { worker_connections 4096; }
C
}

# Starts the upstream: one nginx worker serving $WORK/www on PORT; its PID is UPSTREAM_PID.
start_upstream() { # port
  chmod -R a+rX "$WORK" # nginx workers drop root
  { nginx_head upstream; cat <<C
http {
  access_log off;
  keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:$1; root $WORK/www; }
}
C
  } > "$WORK/upstream.conf"
  "$NGINX" -c "$WORK/upstream.conf" -g 'daemon off;' & UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
}

# The bench customers, acme and globex, as config; their API keys are bench-key-<id>.
bench_clients() {
  local id name
  for id in acme globex; do
    name="$(tr '[:lower:]' '[:upper:]' <<<"${id:0:1}")${id:1}"
    printf '[[client]]\nid = "%s"\nkind = "customer"\nname = "%s"\napi_key_sha256 = ["%s"]\n' \
      "$id" "$name" "$(printf "bench-key-%s" "$id" | sha256sum | cut -d' ' -f1)"
  done
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

# The ten rules of the redacting benchmarks, a non-controller's view, into $WORK/rules.toml:
# half the records (globex's) are redacted for acme.
bench_rules() {
  local spec id path action
  for spec in "email:\$.recipient.email:redact" "phone:\$.recipient.phone:redact" "name:\$.recipient.name:redact" \
              "street:\$.recipient.address.street:redact" "street2:\$.recipient.address.street2:redact" \
              "postal:\$.recipient.address.postal_code:mask" "company:\$.recipient.company:redact" \
              "notes:\$.delivery_notes:redact" "dob:\$..date_of_birth:remove" "geo:\$.recipient.address.geo:remove"; do
    IFS=: read -r id path action <<<"$spec"
    printf '[[rule]]\nid = "%s"\npath = "%s"\naction = "%s"\ncategory = "user"\nreason = "benchmark"\nwhen.caller = "not_controller"\n' \
      "$id" "$path" "$action" >> "$WORK/rules.toml"
  done
}

# The upstream, the bench customers and the two benchmark routes (a passthrough catch-all and the
# redacting `/redact` with bench_rules), as config text for an upstream on PORT.
bench_routes() { # upstream_port
  cat <<C
[[upstream]]
name = "static"
url = "http://127.0.0.1:$1"
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
C
}

# wrk's latency values come with units; normalised to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}

# One wrk run of $DURATION with $CONNS connections: "rps p99_ms". Any non-2xx answer aborts.
# CPU time (utime + stime, in clock ticks) a process and its children have used so far: nginx's
# master and workers, haproxy's threads, the gateway's threads.
cpu_ticks() { # pid
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    # Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# One wrk run: "rps p99_ms", and with a PID "rps p99_ms cpu_us_per_request": the CPU the
# process (and its children) used over the run, divided by the requests wrk counted.
wrk_once() { # url header [pid]
  local out before after requests
  [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$2" "$1")
  [ -n "${3:-}" ] && after=$(cpu_ticks "$3")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "non-2xx answers from $1: $out" >&2
    exit 1
  fi
  local line
  line="$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
  if [ -n "${3:-}" ]; then
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    line+=" $(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
  fi
  echo "$line"
}

# The [store] lines of an empty store for BACKEND (sqlite or postgres): a new file in the work
# folder, or a new database `gateway_NAME` at $PG_BASE (dropped first if a run left it). Fails,
# printing nothing, when PostgreSQL does not answer.
PG_BASE=${PG_BASE:-postgres://postgres@127.0.0.1:5432}
fresh_store() { # backend name
  case $1 in
    sqlite) printf 'backend = "sqlite"\npath = "%s"\n' "$WORK/$2.db" ;;
    postgres)
      psql "$PG_BASE/postgres" -qc "DROP DATABASE IF EXISTS gateway_$2" 2>/dev/null || return 1
      psql "$PG_BASE/postgres" -qc "CREATE DATABASE gateway_$2"
      printf 'backend = "postgres"\nurl = "%s"\n' "$PG_BASE/gateway_$2" ;;
  esac
}

# The median of whitespace-separated numbers on stdin.
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
