#!/usr/bin/env bash
# Event-bus benchmark: how fast varco accepts CloudEvents into its durable outbox, how fast one
# single-node subscription delivers them to a webhook (nginx answering 204), and how fast its
# relay moves them to a Kafka-protocol broker compared with a raw rdkafka producer with the
# same settings against the same broker in the same run. See bench/README.md ("Events").
#
#   bench/events.sh                      # 2 runs
#   BENCH_RUNS=1 BENCH_DURATION=5s bench/events.sh
#   BENCH_KAFKA=0 bench/events.sh        # without the Kafka rows
#
# Needs wrk, curl, python3, tansu (cargo install tansu --version 0.6.0 --locked
# --no-default-features --features libsql). Without tansu only the publish rows run.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
BATCH=${BENCH_BATCH:-10}
log() { printf 'bench-events: %s\n' "$*" >&2; }
die() { printf 'bench-events: error: %s\n' "$*" >&2; exit 1; }
for t in wrk curl python3; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y wrk curl python3)"; done
HAVE_TANSU=1; command -v tansu >/dev/null || { HAVE_TANSU=0; log "tansu not found: relay rows skipped"; }
[[ ${BENCH_KAFKA:-1} == 0 ]] && HAVE_TANSU=0  # the single-node rows only

if [[ ${BENCH_BUILD:-1} == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p varco && cargo test --release -q -p varco-events --no-run 2>/dev/null) || die "build failed"
fi
VARCO=$TARGET_DIR/release/varco
EVENTS_TEST=$(cd "$ROOT" && cargo test --release -q -p varco-events --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "varco_events": print(m["executable"])' | tail -1)

WORK=$(mktemp -d /tmp/varco-bench-events.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; [[ -n ${BENCH_KEEP_WORK:-} ]] && cp -r "$WORK" /tmp/bench-work-kept; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; die "not up: $1"; }
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" '$1==m {print $2}'; }

# The publishing back-office's API key (event routes are never public).
KEY=bench-key-0123456789
# The Kafka-mode rows seal subjects and hash keys with this (>= 32 bytes).
export BENCH_SUBJECT_KEY=bench-subject-key-0123456789abcdef0123

# One residence-change event (~450 bytes as stored), and a batch of BATCH of them.
python3 - "$WORK" "$BATCH" "$KEY" <<'PY'
import json, sys
d, n, KEY = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def ev(i):
    return {"specversion": "1.0", "id": "bench-%d" % i, "source": "/enti/c_e783/anagrafe",
            "type": "it.varco.anagrafe.residenza.cambiata.v1", "subject": "RSSMRA80A01H5%02dU" % (i % 100),
            "data": {"codiceFiscale": "RSSMRA80A01H501U", "comuneProvenienza": "E783", "comuneDestinazione": "A662",
                     "dataDecorrenza": "2026-11-20", "indirizzo": {"via": "Corso della Repubblica", "civico": "12", "cap": "62100"}}}
open(d + "/one.json", "w").write(json.dumps(ev(0)))
# The event as varco stores and relays it (dataschema and time filled in).
stored = dict(ev(0), dataschema="urn:varco:events:it.varco.anagrafe.residenza.cambiata.v1", time="2026-11-24T10:00:00Z",
              datacontenttype="application/json", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
open(d + "/stored.json", "w").write(json.dumps(stored))
open(d + "/batch.json", "w").write(json.dumps([ev(i) for i in range(n)]))
for name, ct in (("one", "application/cloudevents+json"), ("batch", "application/cloudevents-batch+json")):
    body = open(d + "/%s.json" % name).read()
    # Every request gets ids of its own (varco stores an event published again with the same
    # source and id only once).
    open(d + "/%s.lua" % name, "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "%s"\nwrk.headers["X-Api-Key"] = "%s"\n'
        'local template = %s\nlocal n = 0\nlocal salt = os.time() .. "-" .. math.floor(os.clock() * 1000000)\n'
        'request = function()\n  n = n + 1\n'
        '  local body = string.gsub(template, \'"id": "bench%%-\', \'"id": "r\' .. salt .. "-" .. n .. \'-\')\n'
        '  return wrk.format(nil, nil, nil, body)\nend\n' % (ct, KEY, json.dumps(body)))
PY

# The webhook of the subscription row: nginx answering 204 to every POST.
HOOK=$(port)
if command -v nginx >/dev/null; then
    cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; client_body_buffer_size 16k;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$HOOK; location / { return 204; } } }
NGX
    nginx -p "$WORK" -c "$WORK/nginx.conf" & pids+=($!)
    wait_up "http://127.0.0.1:$HOOK/" || true
fi

subscriber_config() { # $1 port, $2 admin, $3 outbox dir, $4 kafka (or ""), $5 webhook port: Bari subscribed to Macerata's residence changes
    config "$1" "$2" "$3" "${4:-}"
    cat <<YML
    events: {readers: [{tenant: c_a662, types: [it.varco.anagrafe.residenza.cambiata.v1]}]}
  - id: c_a662
    name: Bari
    hosts: [bari.bench]
    events:
      subscriptions:
        - {name: bench, types: [it.varco.anagrafe.residenza.cambiata.v1], sources: [c_e783], webhook: {url: "http://127.0.0.1:${5:-$HOOK}/hook", secret: {env: BENCH_HOOK_SECRET}}}
YML
}

config() { # $1 port, $2 admin, $3 outbox dir, $4 kafka bootstrap (optional)
    local kafka=""
    [[ -n ${4:-} ]] && kafka=", kafka: {brokers: \"$4\", topic: ${BENCH_TOPIC_NAME:-varco-bench}, layout: shared, create_partitions: 0, subject_key: {env: BENCH_SUBJECT_KEY}}"
    cat <<YML
server: {threads: 1, access_log: false, events: {dir: "$3", max_bytes: 17179869184$kafka}}
listeners: [{name: public, address: "127.0.0.1:$1"}]
admin: {address: "127.0.0.1:$2"}
tenants:
  - id: c_e783
    name: Macerata
    api_keys: [{name: bench, hash: "sha256:$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)"}]
    routes: [{name: events, path: /events, methods: [POST], access: {api_key: {}}, to: {adapter: {kind: events}}}]
YML
}

start_varco() { # $1 outbox dir, $2 kafka (optional)
    PORT=$(port); ADMIN=$(port)
    config "$PORT" "$ADMIN" "$1" "${2:-}" >"$WORK/varco.yaml"
    "$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & VPID=$!; pids+=($VPID)
    wait_up "http://127.0.0.1:$ADMIN/readyz"
}
stop_varco() { kill -INT "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true; }

# Events/s until the counter $1 (any labels) reaches $2 on the running varco, timed from $3
# (default now); "nan" if it has not after BENCH_DRAIN_DEADLINE seconds (default 180).
drain_rate() {
    local t0 t1 n deadline
    t0=${3:-$(date +%s.%N)}
    deadline=$(( $(date +%s) + ${BENCH_DRAIN_DEADLINE:-180} ))
    while :; do
        n=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" 'index($1, m) == 1 {print $2; exit}'); n=${n:-0}
        ((${n%.*} >= $2)) && break
        if (($(date +%s) > deadline)); then log "$1 reached ${n%.*} of $2 in time: row skipped"; echo nan; return; fi
        sleep 0.05
    done
    t1=$(date +%s.%N)
    python3 -c "print(round($2 / ($t1 - $t0)))"
}

# Publish → webhook of another ente, one event at a time → "p50_ms p99_ms".
latency_row() { # $1 outbox dir, $2 kafka bootstrap (optional)
    local lhook; lhook=$(port)
    PORT=$(port); ADMIN=$(port)
    subscriber_config "$PORT" "$ADMIN" "$1" "${2:-}" "$lhook" >"$WORK/varco.yaml"
    BENCH_HOOK_SECRET=bench-secret "$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & VPID=$!; pids+=($VPID)
    wait_up "http://127.0.0.1:$ADMIN/readyz"
    python3 "$BENCH_DIR/latency.py" --hook "$lhook" --url "http://127.0.0.1:$PORT/events" --key "$KEY" --count "${BENCH_LATENCY_EVENTS:-200}"
    stop_varco
}

# wrk → "req/s p50_ms p99_ms"
wrk_row() { # $1 lua
    wrk -t1 -c"$CONNECTIONS" -d2s -s "$1" "http://127.0.0.1:$PORT/events" >/dev/null
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$1" "http://127.0.0.1:$PORT/events" | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
if non2xx: sys.exit("wrk: %s answers were not 202" % non2xx.group(1))
print(rps, ms("50%"), ms("99%"))'
}

results=()
for run in $(seq "$RUNS"); do
    log "run $run/$RUNS"
    OUTBOX=$WORK/outbox-$run
    # The outbox alone (no HTTP): the disk and group commit.
    direct=$(BENCH_OUTBOX_DIR=$WORK/direct-$run "$EVENTS_TEST" --ignored --exact bench::tests::outbox_append_throughput --nocapture 2>/dev/null | awk '/outbox-append/ {print $2}')
    rm -rf "$WORK/direct-$run"
    start_varco "$OUTBOX"
    read -r one_rps one_p50 one_p99 < <(wrk_row "$WORK/one.lua")
    read -r b_rps b_p50 b_p99 < <(wrk_row "$WORK/batch.lua")
    stored=$(metric varco_outbox_committed_sequence)
    stop_varco
    # One subscription drains what the publish rows stored (capped for time), from a fresh
    # position: delivery rate against the 1-event-per-request publish rate above.
    sub=""
    if command -v nginx >/dev/null; then
        cap=${BENCH_SUB_EVENTS:-100000}
        todo=$((stored < cap ? stored : cap))
        printf '%s' $((stored - todo + 1)) >"$OUTBOX/cursors/sub.c_a662.bench"
        PORT=$(port); ADMIN=$(port)
        subscriber_config "$PORT" "$ADMIN" "$OUTBOX" >"$WORK/varco.yaml"
        BENCH_HOOK_SECRET=bench-secret "$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & VPID=$!; pids+=($VPID)
        wait_up "http://127.0.0.1:$ADMIN/readyz"
        sub=$(drain_rate varco_events_delivered_total "$todo")
        stop_varco
    fi
    read -r lat_p50 lat_p99 < <(latency_row "$WORK/latency-$run")
    rm -rf "$WORK/latency-$run"
    relay="" raw="" ksub=""
    if ((HAVE_TANSU)); then
        KPORT=$(port); mkdir -p "$WORK/tansu-$run"
        (cd "$WORK/tansu-$run" && exec tansu broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine sqlite://tansu.db) >"$WORK/tansu.log" 2>&1 & KPID=$!; pids+=($KPID)
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$KPORT) 2>/dev/null && break; sleep 0.1; done
        tansu topic create varco-bench --broker "tcp://127.0.0.1:$KPORT" --partitions 6 >/dev/null
        tansu topic create raw-bench --broker "tcp://127.0.0.1:$KPORT" --partitions 6 >/dev/null
        # The relay drains the events the publish rows stored (capped for time): restart the same
        # outbox with Kafka configured and time the drain.
        cap=${BENCH_RELAY_EVENTS:-300000}
        if ((stored > cap)); then
            printf '%s' $((stored - cap + 1)) >"$OUTBOX/cursors/relay"
            todo=$cap
        else
            todo=$stored
        fi
        start_varco "$OUTBOX" "127.0.0.1:$KPORT"
        relay=$(drain_rate varco_events_relayed_total "$todo")
        stop_varco
        raw=$(BENCH_KAFKA="127.0.0.1:$KPORT" BENCH_TOPIC=raw-bench BENCH_RECORDS=$todo BENCH_EVENT_FILE="$WORK/stored.json" "$EVENTS_TEST" --ignored --exact bench::tests::raw_producer_throughput --nocapture 2>/dev/null | awk '/raw-producer/ {print $2}')
        # That broker is done: it keeps a core busy for minutes after such a load, which would
        # slow the fresh one below.
        kill "$KPID" 2>/dev/null || true
        # A fresh broker for the Kafka delivery rows (tansu slows down with the relay row's
        # records): latency one event at a time, the subscription's consumer group at the end
        # of a new topic; then throughput: publish for 2 s and time from the first publish until
        # one subscription has delivered every event (relay + consumer group + webhook).
        K2=$(port); mkdir -p "$WORK/tansu-ksub-$run"
        (cd "$WORK/tansu-ksub-$run" && exec tansu broker --listener-url "tcp://127.0.0.1:$K2" --advertised-listener-url "tcp://127.0.0.1:$K2" --storage-engine sqlite://tansu.db) >"$WORK/tansu-ksub.log" 2>&1 & kpid=$!; pids+=($kpid)
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$K2) 2>/dev/null && break; sleep 0.1; done
        tansu topic create varco-lat --broker "tcp://127.0.0.1:$K2" --partitions 6 >/dev/null
        read -r klat_p50 klat_p99 < <(BENCH_TOPIC_NAME=varco-lat latency_row "$WORK/klatency-$run" "127.0.0.1:$K2")
        if command -v nginx >/dev/null; then
            tansu topic create varco-ksub --broker "tcp://127.0.0.1:$K2" --partitions 6 >/dev/null
            PORT=$(port); ADMIN=$(port)
            # A subscription name (so a consumer group) of its own: the latency row's group on
            # this broker read another topic.
            BENCH_TOPIC_NAME=varco-ksub subscriber_config "$PORT" "$ADMIN" "$WORK/ksub-$run" "127.0.0.1:$K2" \
                | sed 's/{name: bench,/{name: ksub,/' >"$WORK/varco.yaml"
            BENCH_HOOK_SECRET=bench-secret "$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & VPID=$!; pids+=($VPID)
            wait_up "http://127.0.0.1:$ADMIN/readyz"
            t_pub=$(date +%s.%N)
            wrk -t1 -c16 -d2s -s "$WORK/one.lua" "http://127.0.0.1:$PORT/events" >/dev/null
            published=$(metric varco_outbox_committed_sequence)
            ksub=$(drain_rate varco_events_delivered_total "$published" "$t_pub")
            stop_varco
        fi
        kill "$kpid" 2>/dev/null || true
        rm -rf "$WORK/ksub-$run" "$WORK/tansu-ksub-$run" "$WORK/klatency-$run"
    fi
    rm -rf "$OUTBOX"
    results+=("$run $direct $one_rps $one_p50 $one_p99 $b_rps $b_p50 $b_p99 ${relay:-nan} ${raw:-nan} ${sub:-nan} ${lat_p50:-nan} ${lat_p99:-nan} ${klat_p50:-nan} ${klat_p99:-nan} ${ksub:-nan}")
    python3 - "$BATCH" $direct $one_rps $one_p50 $one_p99 $b_rps $b_p50 $b_p99 ${relay:-nan} ${raw:-nan} ${sub:-nan} ${lat_p50:-nan} ${lat_p99:-nan} ${klat_p50:-nan} ${klat_p99:-nan} ${ksub:-nan} <<'PY'
import sys
b = int(sys.argv[1]); v = [float(x) for x in sys.argv[2:]]
direct, one, one50, one99, br, b50, b99, relay, raw, sub, l50, l99, k50, k99, ksub = v
print("| row | events/s | p50 ms | p99 ms | note |")
print("|---|---:|---:|---:|---|")
print("| outbox alone (in-process, 64 appenders) | %.0f | | | disk + group commit |" % direct)
print("| POST /events, 1 event per request | %.0f | %.2f | %.2f | %.0f req/s |" % (one, one50, one99, one))
print("| POST /events, batch of %d | %.0f | %.2f | %.2f | %.0f req/s |" % (b, br * b, b50, b99, br))
if sub == sub:
    print("| one subscription → webhook (single node) | %.0f | | | %.2f × 1-event publish rate |" % (sub, sub / one))
if ksub == ksub:
    print("| publish → relay → Kafka (tansu) → one subscription → webhook | %.0f | | | %.2f × 1-event publish rate; 2 s of publishing, timed to the last delivery |" % (ksub, ksub / one))
if l50 == l50:
    print("| publish → another ente's webhook, single node | | %.2f | %.2f | one event at a time |" % (l50, l99))
if k50 == k50:
    print("| publish → another ente's webhook, Kafka (fresh tansu) | | %.2f | %.2f | one event at a time |" % (k50, k99))
if relay == relay:
    print("| relay outbox → Kafka (tansu) | %.0f | | | %.2f × raw producer |" % (relay, relay / raw))
    print("| raw rdkafka producer, same settings | %.0f | | | reference |" % raw)
PY
done
if ((RUNS > 1)); then
    printf '%s\n' "${results[@]}" | python3 -c '
import sys
rows = [[float(x) for x in l.split()[1:]] for l in sys.stdin if l.strip()]
col = lambda i: [r[i] for r in rows]
rng = lambda xs: "%.0f–%.0f" % (min(xs), max(xs))
b = '"$BATCH"'
print("\nranges over %d runs:" % len(rows))
print("  outbox alone:        %s events/s" % rng(col(0)))
print("  1 event/request:     %s events/s, p99 %.2f–%.2f ms" % (rng(col(1)), min(col(3)), max(col(3))))
print("  batch of %d:        %s events/s, p99 %.2f–%.2f ms" % (b, rng([x * b for x in col(4)]), min(col(6)), max(col(6))))
if rows[0][7] == rows[0][7]:
    print("  relay/raw producer:  %.2f–%.2f" % (min(r[7] / r[8] for r in rows), max(r[7] / r[8] for r in rows)))
if rows[0][10] == rows[0][10]:
    print("  latency single node: p50 %.2f–%.2f ms, p99 %.2f–%.2f ms" % (min(col(10)), max(col(10)), min(col(11)), max(col(11))))
if rows[0][12] == rows[0][12]:
    print("  latency Kafka:       p50 %.2f–%.2f ms, p99 %.2f–%.2f ms" % (min(col(12)), max(col(12)), min(col(13)), max(col(13))))
if rows[0][9] == rows[0][9]:
    print("  subscription:        %s events/s, %.2f–%.2f × 1-event publish" % (rng(col(9)), min(r[9] / r[1] for r in rows), max(r[9] / r[1] for r in rows)))
if rows[0][14] == rows[0][14]:
    print("  subscription, Kafka: %s events/s, %.2f–%.2f × 1-event publish" % (rng(col(14)), min(r[14] / r[1] for r in rows), max(r[14] / r[1] for r in rows)))'
fi
