#!/usr/bin/env bash
# A/B of two gateway builds: both run at once behind the same nginx upstream, and wrk alternates
# between them, so a noisy machine moves both alike. Prints the median rps, p99 and CPU
# microseconds per request of each over ROUNDS rounds, per route and size, and the ratios B/A
# (rps: above 1, B serves more; CPU: below 1, B spends less per request).
#
#   cp target/release/recipient-gateway /tmp/gateway-a      # before the change
#   ... change, cargo build --release ...
#   benches/ab.sh /tmp/gateway-a target/release/recipient-gateway
#   ROUNDS=5 DURATION=8s SIZES="1k" ROUTES="passthrough" benches/ab.sh A B
#
# Plain HTTP, memory tag store, the same ten redaction rules as load.sh on the redacting route.
set -euo pipefail

A=$(realpath "$1")
B=$(realpath "$2")
DURATION=${DURATION:-6s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SIZES=${SIZES:-"1k 16k"}
ROUTES=${ROUTES:-"passthrough redacting"}
UPSTREAM_PORT=18181
A_PORT=18182
B_PORT=18183

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

bench_bodies $SIZES
bench_rules
config() { # port admin_port
  cat <<EOF
[listen]
address = "127.0.0.1:$1"
tls = false
[admin]
address = "127.0.0.1:$2"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "memory"
$(bench_routes $UPSTREAM_PORT)
EOF
}
config $A_PORT 18192 > "$WORK/a.toml"
config $B_PORT 18193 > "$WORK/b.toml"
start_upstream $UPSTREAM_PORT
"$A" run --config "$WORK/a.toml" > /dev/null & A_PID=$!; PIDS+=($A_PID)
"$B" run --config "$WORK/b.toml" > /dev/null & B_PID=$!; PIDS+=($B_PID)
for port in $UPSTREAM_PORT $A_PORT $B_PORT; do wait_port "$port"; done

printf '%-12s %-5s %10s %8s %7s %10s %8s %7s %8s %8s\n' route size a_rps a_p99 a_cpu b_rps b_p99 b_cpu rps_b/a cpu_b/a
for route in $ROUTES; do
  prefix=""; header="X-Bench: 1"
  [ "$route" = redacting ] && { prefix="/redact"; header="Authorization: Bearer bench-key-acme"; }
  for size in $SIZES; do
    a_rps=""; a_p99=""; a_cpu=""; b_rps=""; b_p99=""; b_cpu=""
    wrk -t1 -c"$CONNS" -d2s -H "$header" "http://127.0.0.1:$A_PORT$prefix/$size.json" >/dev/null 2>&1
    wrk -t1 -c"$CONNS" -d2s -H "$header" "http://127.0.0.1:$B_PORT$prefix/$size.json" >/dev/null 2>&1
    for _ in $(seq "$ROUNDS"); do
      read -r r p c < <(wrk_once "http://127.0.0.1:$A_PORT$prefix/$size.json" "$header" "$A_PID")
      a_rps+="$r "; a_p99+="$p "; a_cpu+="$c "
      read -r r p c < <(wrk_once "http://127.0.0.1:$B_PORT$prefix/$size.json" "$header" "$B_PID")
      b_rps+="$r "; b_p99+="$p "; b_cpu+="$c "
    done
    ar=$(median <<<"$a_rps"); ap=$(median <<<"$a_p99"); ac=$(median <<<"$a_cpu")
    br=$(median <<<"$b_rps"); bp=$(median <<<"$b_p99"); bc=$(median <<<"$b_cpu")
    printf '%-12s %-5s %10.0f %8s %7s %10.0f %8s %7s %8.3f %8.3f\n' "$route" "$size" "$ar" "$ap" "$ac" \
      "$br" "$bp" "$bc" "$(awk -v a="$ar" -v b="$br" 'BEGIN { print b / a }')" \
      "$(awk -v a="$ac" -v b="$bc" 'BEGIN { print b / a }')"
  done
done
echo "(wrk -t1 -c$CONNS, $ROUNDS alternating rounds of $DURATION, medians; plain HTTP; memory store)"
