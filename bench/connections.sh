#!/usr/bin/env bash
# Memory for idle keep-alive connections: varco (1 worker thread) on the plain route, RSS idle,
# then N client connections (default 10000) that each send one request, read the answer and
# stay open, idle; RSS with them open, and per connection. pingora-minimal in the same run for
# reference. The client is one Python asyncio process; `ulimit -n` must allow N + some.
#
#   bench/connections.sh
#   BENCH_CONNS=2000 BENCH_BUILD=0 bench/connections.sh
#   BENCH_READ_BUFFER=65536 bench/connections.sh   # varco with pingora's read buffer
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONNS=${BENCH_CONNS:-10000}
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
source "$BENCH_DIR/lib.sh"
for t in curl python3 nginx; do command -v "$t" >/dev/null || die "missing $t"; done
(( $(ulimit -n) > CONNS + 100 )) || ulimit -n $((CONNS + 200)) 2>/dev/null || die "ulimit -n is below $CONNS"
[[ ${BENCH_BUILD:-1} == 1 ]] && (cd "$ROOT" && cargo build --release -q -p varco -p pingora-minimal)
WORK=$(mktemp -d /tmp/varco-conns.XXXXXX)
pids=()
# TERM first: nginx's master takes its workers with it only when it is not SIGKILLed.
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

BACKEND=$(port)
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$BACKEND; location / { return 200 'ok'; } } }
NGX
nginx -p "$WORK" -c "$WORK/nginx.conf" & pids+=($!)
wait_up "http://127.0.0.1:$BACKEND/"

# hold PORT N: opens N connections, one request each, keeps them; prints "ok" when all are
# open and answered, then waits for stdin to close.
cat >"$WORK/hold.py" <<'PY'
import asyncio, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
async def one(i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /conn/%d HTTP/1.1\r\nHost: bench\r\n\r\n" % i)
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    await r.readexactly(length)
    return w
async def main():
    conns = []
    for start in range(0, n, 500):
        conns += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 500))))
    print("ok", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
PY

measure() { # NAME PID PORT
    local name=$1 pid=$2 p=$3 idle with
    sleep 1
    idle=$(rss_mib "$pid")
    coproc HOLD { python3 "$WORK/hold.py" "$p" "$CONNS"; }
    local line
    read -r line <&"${HOLD[0]}" || die "$name: the client failed"
    [[ $line == ok* ]] || die "$name: $line"
    sleep 2
    with=$(rss_mib "$pid")
    printf '| %s | %s | %s MiB | %s MiB | %s KiB |\n' "$name" "$CONNS" "$idle" "$with" \
        "$(python3 -c "print(f'{($with - $idle) * 1024 / $CONNS:.1f}')")"
    exec {HOLD[1]}>&-
    wait "$HOLD_PID" 2>/dev/null || true
}

printf '| server | idle connections | RSS before | RSS with them open | per connection |\n|---|---:|---:|---:|---:|\n'

# pingora-minimal with pingora's 64 KiB read buffer per connection, then with none (as varco's
# plain listeners have by default).
for rb in default 0; do
    P=$(port)
    args=(); [[ $rb != default ]] && args=(--read-buffer "$rb")
    "$TARGET_DIR/release/pingora-minimal" --listen "127.0.0.1:$P" --backend "127.0.0.1:$BACKEND" --threads 1 "${args[@]}" >/dev/null 2>&1 &
    pm=$!; pids+=($pm)
    wait_up "http://127.0.0.1:$P/"
    measure "pingora-minimal (read buffer: $rb)" "$pm" "$P"
    kill -TERM "$pm"
done

P=$(port); A=$(port)
cat >"$WORK/varco.yaml" <<YML
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$P", max_connections_per_address: $((CONNS + 100)), max_connections: $((CONNS + 100))${BENCH_READ_BUFFER:+, read_buffer_bytes: $BENCH_READ_BUFFER}}]
admin: {address: "127.0.0.1:$A"}
tenants:
  - id: bench
    name: Bench
    upstreams: {backend: {servers: ["127.0.0.1:$BACKEND"]}}
    routes: [{name: plain, path: "/{*rest}", methods: [GET], access: public, to: {upstream: backend}}]
YML
"$TARGET_DIR/release/varco" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 &
v=$!; pids+=($v)
wait_up "http://127.0.0.1:$A/readyz"
measure "varco (read buffer: ${BENCH_READ_BUFFER:-default, none})" "$v" "$P"
