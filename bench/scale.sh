#!/usr/bin/env bash
# How varco scales with the number of enti: N enti of 10 routes each (one upstream pool, one
# rate limit per route), for N = 10, 100, 1000 (BENCH_ENTI to change): time to start (until
# /readyz answers 200), RSS idle, then 8 reloads through the admin API (each one's time, RSS
# after each). Prints a table; the figures are the process's own (no load generator runs).
# Each N runs twice: with `MIMALLOC_PURGE_DELAY=0`, as the image and the systemd unit in deploy/
# run varco (freed memory goes back to the system at once), and with the allocator's default
# (freed pages wait for the freeing thread's next allocation: an idle process keeps a reload's
# garbage). BENCH_PURGE="0" or "default" runs one of them.
#
#   bench/scale.sh
#   BENCH_ENTI="10 1000" BENCH_BUILD=0 bench/scale.sh
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ENTI=${BENCH_ENTI:-10 100 1000}
RELOADS=${BENCH_RELOADS:-8}
for t in curl python3; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[[ ${BENCH_BUILD:-1} == 1 ]] && (cd "$ROOT" && cargo build --release -q -p varco)
VARCO=$TARGET_DIR/release/varco
WORK=$(mktemp -d /tmp/varco-scale.XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Bash's own clock: starting a process to read the time would add tens of milliseconds.
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

PURGE=${BENCH_PURGE:-0 default}
summary=""
printf '| enti | routes | MIMALLOC_PURGE_DELAY | start | RSS idle | reload (median of %s) | RSS after 1 reload | RSS after %s |\n' "$RELOADS" "$RELOADS"
printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for purge in $PURGE; do
first_n=""; first_rss=
if [[ $purge == default ]]; then unset MIMALLOC_PURGE_DELAY; else export MIMALLOC_PURGE_DELAY=$purge; fi
for n in $ENTI; do
    P=$(port); A=$(port)
    python3 - "$n" "$P" "$A" >"$WORK/varco.yaml" <<'PY'
import sys
n, p, a = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print("server: {access_log: false, threads: 1}")
print(f'listeners: [{{name: public, address: "127.0.0.1:{p}"}}]')
print(f'admin: {{address: "127.0.0.1:{a}"}}')
print("tenants:")
for i in range(n):
    print(f"  - id: e_{i:04d}")
    print(f"    name: Ente {i}")
    print(f"    hosts: [e{i}.example.it]")
    print("    upstreams: {bo: {servers: [\"127.0.0.1:9\"]}}")
    print("    routes:")
    for r in range(10):
        print(f'      - {{name: r{r}, path: "/api{r}/{{*rest}}", methods: [GET, POST], access: public, to: {{upstream: bo}}, rate_limits: [{{per: client_ip, requests: 100, period: 1s}}]}}')
PY
    t0=$(now_ms)
    "$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$A/readyz"; do sleep 0.01; kill -0 "$pid" 2>/dev/null || { cat "$WORK/log" >&2; exit 1; }; done
    start=$(( $(now_ms) - t0 ))
    sleep 1
    idle=$(rss_mib "$pid")
    times=()
    for i in $(seq "$RELOADS"); do
        r0=$(now_ms)
        curl -sf -o /dev/null -X POST "http://127.0.0.1:$A/admin/reload"
        times+=($(( $(now_ms) - r0 )))
        [[ $i == 1 ]] && after1=$(rss_mib "$pid")
    done
    sleep 1
    after=$(rss_mib "$pid")
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '| %s | %s | %s | %s ms | %s MiB | %s ms | %s MiB | %s MiB |\n' "$n" "$((n * 10))" "$purge" "$start" "$idle" "$median" "$after1" "$after"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    if [[ -z $first_n ]]; then first_n=$n; first_rss=$idle; last_n=$n; last_rss=$idle; else last_n=$n; last_rss=$idle; fi
done
if [[ $last_n != "$first_n" ]]; then
    summary+=$(python3 -c "print(f'memory per route (idle, {$first_n} to {$last_n} enti, MIMALLOC_PURGE_DELAY=$purge): {($last_rss - $first_rss) * 1024 / (($last_n - $first_n) * 10):.1f} KiB')")$'\n'
fi
done
printf '\n%s' "${summary:-}"
