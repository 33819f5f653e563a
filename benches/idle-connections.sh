#!/usr/bin/env bash
# Resident memory of the gateway holding N idle TLS keep-alive connections (default 1000), each
# after one proxied request. Needs nginx (the upstream) and python3 (the clients).
#
#   benches/idle-connections.sh [N]
set -euo pipefail
N=${1:-1000}
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
"$GATEWAY" dev-certs --out "$WORK/certs" >/dev/null
mkdir -p "$WORK/www"
printf '{"a":"%s"}' "$(head -c 1000 /dev/zero | tr '\0' a)" > "$WORK/www/1k.json"
cat > "$WORK/gw.toml" <<C
[listen]
address = "127.0.0.1:18283"
tls_cert = "$WORK/certs/localhost.crt"
tls_key = "$WORK/certs/localhost.key"
[admin]
address = "127.0.0.1:18293"
[keys]
tag_key = "bench-only-tag-key-0123456789"
[store]
backend = "memory"
[[upstream]]
name = "static"
url = "http://127.0.0.1:18281"
[[route]]
name = "all"
path_prefix = "/"
upstream = "static"
auth = "none"
C
start_upstream 18281
"$GATEWAY" run --config "$WORK/gw.toml" > /dev/null & GP=$!
PIDS+=("$GP")
wait_port 18281; wait_port 18283
before=$(awk '/VmRSS/ {print $2}' "/proc/$GP/status")
python3 - "$N" "$WORK/certs/ca.crt" "$GP" "$before" <<'PY'
import asyncio, ssl, sys
n, ca, pid, before = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", 18283, ssl=ctx, server_hostname="localhost")
    w.write(b"GET /1k.json HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    data = b""
    while b"\r\n\r\n" not in data:
        data += await r.read(65536)
    conns.append((r, w))
async def main():
    conns = []
    for i in range(0, n, 50):
        await asyncio.gather(*(one(conns) for _ in range(min(50, n - i))))
    await asyncio.sleep(2)
    rss = int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
    print(f"{len(conns)} idle TLS keep-alive connections: RSS {rss / 1024:.1f} MiB "
          f"(before: {before / 1024:.1f} MiB, {(rss - before) / len(conns):.1f} KiB per connection)")
asyncio.run(main())
PY
