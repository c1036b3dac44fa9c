#!/usr/bin/env bash
# varco benchmark: varco against nginx and a minimal pingora proxy, all in front of the same
# nginx backend serving a fixed 1 KiB JSON body. See bench/README.md.
#
#   bench/run.sh                               # 2 runs of 10s per target
#   BENCH_DURATION=5s BENCH_RUNS=1 bench/run.sh
#
# Knobs (environment): BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64),
# BENCH_WRK_THREADS (1), BENCH_RUNS (2), BENCH_TARGETS ("direct nginx pingora-minimal
# pingora-minimal+headers varco varco+log varco+ratelimit varco+bearer varco+jwt pingap pingap+jwt
# pingap+ratelimit"; also varco+audit, varco+trace100, varco+trace1), BENCH_PROXY_CPU (0),
# BENCH_LOAD_CPU (1), BENCH_PIN (1), BENCH_BUILD (1), CARGO_TARGET_DIR, NGINX, WRK, PINGAP (the
# pingap binary; default: pingap on PATH, its rows are skipped without it).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
RUNS=${BENCH_RUNS:-2}
TARGETS=${BENCH_TARGETS:-direct nginx pingora-minimal pingora-minimal+headers varco varco+log varco+ratelimit varco+bearer varco+jwt pingap pingap+jwt pingap+ratelimit}
PINGAP=${PINGAP:-$(command -v pingap || true)}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
PIN=${BENCH_PIN:-1}
BUILD=${BENCH_BUILD:-1}
URL_PATH=/bench/item
NPROC=$(nproc)  # before the script pins itself to one CPU

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$RUNS'"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS must be a positive integer, not '$CONNECTIONS'"
[[ $WRK_THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WRK_THREADS must be a positive integer"
((CONNECTIONS >= WRK_THREADS)) || die "BENCH_CONNECTIONS must be >= BENCH_WRK_THREADS"

# ---------------------------------------------------------------------------- prerequisites

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
WRK=${WRK:-$(command -v wrk || echo /usr/bin/wrk)}
missing=()
[[ -x $NGINX ]] || missing+=(nginx-light)
[[ -x $WRK ]] || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "missing tools; install them with:"
    log "  sudo apt-get install -y ${missing[*]}"
    exit 1
fi

if [[ $PIN == 1 ]]; then
    if ! command -v taskset >/dev/null; then
        log "taskset not found (package util-linux): running unpinned"
        PIN=0
    elif ! taskset -c "$PROXY_CPU" true 2>/dev/null || ! taskset -c "$LOAD_CPU" true 2>/dev/null; then
        log "cannot pin to CPUs $PROXY_CPU and $LOAD_CPU (nproc: $NPROC): running unpinned"
        PIN=0
    fi
fi
if [[ $PIN == 1 ]]; then
    PROXY_PIN=(taskset -c "$PROXY_CPU")
    LOAD_PIN=(taskset -c "$LOAD_CPU")
else
    PROXY_PIN=()
    LOAD_PIN=()
fi

# ---------------------------------------------------------------------------- build

TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
VARCO=$TARGET_DIR/release/varco
PINGORA_MINIMAL=$TARGET_DIR/release/pingora-minimal
if [[ $BUILD == 1 ]]; then
    log "building (release, lto=fat: takes minutes from scratch)"
    (cd "$ROOT" && "${CARGO:-cargo}" build --release -p varco -p pingora-minimal) || die "cargo build failed"
fi
[[ -x $VARCO ]] || die "$VARCO not found (build it, or unset BENCH_BUILD=0)"
[[ -x $PINGORA_MINIMAL ]] || die "$PINGORA_MINIMAL not found (build it, or unset BENCH_BUILD=0)"

# ---------------------------------------------------------------------------- process helpers

TMP=$(mktemp -d "${TMPDIR:-/tmp}/varco-bench.XXXXXX")
declare -A TRACKED=()   # pid -> signal that stops it quickly

track() { TRACKED[$1]=${2:-TERM}; }
untrack() { unset "TRACKED[$1]"; }

# alive PID: the process exists and is not a zombie.
alive() {
    local s
    { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
    s=${s##*) }
    [[ ${s%% *} != Z ]]
}

# stop_pids PID...: the tracked stop signal first, SIGKILL after 5 s, then reap our children.
stop_pids() {
    local pid i
    for pid in "$@"; do
        alive "$pid" && kill -s "${TRACKED[$pid]:-TERM}" "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            log "pid $pid did not stop in 5s: SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        untrack "$pid"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    ((${#TRACKED[@]})) && stop_pids "${!TRACKED[@]}"
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'exit 143' TERM

# Auxiliary work (curl, sampling, python) and wrk share the load CPU; only proxies get the other.
[[ $PIN == 1 ]] && taskset -cp "$LOAD_CPU" $$ >/dev/null

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime+stime (all threads) summed over the processes, in clock ticks.
cpu_ticks() {
    local total=0 pid s f
    for pid in "$@"; do
        { read -r s <"/proc/$pid/stat"; } 2>/dev/null || continue
        s=${s##*) }
        read -ra f <<<"$s"
        total=$((total + f[11] + f[12]))  # fields 14 and 15; f[0] is field 3 (state)
    done
    echo "$total"
}

# rss_kb PID...: VmRSS summed over the processes, in KiB.
rss_kb() {
    local total=0 pid k v _
    for pid in "$@"; do
        {
            while read -r k v _; do
                if [[ $k == VmRSS: ]]; then total=$((total + v)); break; fi
            done <"/proc/$pid/status"
        } 2>/dev/null || true
    done
    echo "$total"
}

# core_ticks CPU: "busy total" clock ticks of one CPU from /proc/stat (busy counts steal too).
core_ticks() {
    local l f
    while read -r l; do
        if [[ $l == "cpu$1 "* ]]; then
            read -ra f <<<"$l"  # cpuN user nice system idle iowait irq softirq steal ...
            echo "$((f[1] + f[2] + f[3] + f[6] + f[7] + f[8])) $((f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7] + f[8]))"
            return
        fi
    done </proc/stat
    echo "0 0"
}

free_port() { python3 "$BENCH_DIR/bench.py" ports 1; }

# wait_http NAME PID URL LOGFILE: wait until URL answers 200 with the backend's exact body.
WAIT_HEADERS=()  # extra curl arguments for the start-up check (the JWT route needs its token)
wait_http() {
    local name=$1 pid=$2 url=$3 logf=$4 code i
    for ((i = 0; i < 100; i++)); do
        if ! alive "$pid"; then
            log "$name exited during start-up; its log:"
            tail -n 30 "$logf" >&2 || true
            exit 1
        fi
        code=$(curl -s -o "$TMP/check.body" -w '%{http_code}' --max-time 2 "${WAIT_HEADERS[@]}" "$url" || true)
        [[ $code != 000 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || { tail -n 30 "$logf" >&2 || true; die "$name: GET $url answered $code, expected 200"; }
    cmp -s "$TMP/check.body" "$TMP/body.json" ||
        die "$name: GET $url answered 200 but not the backend's 1 KiB body ($(wc -c <"$TMP/check.body") bytes)"
    log "$name: GET $url -> 200, $(wc -c <"$TMP/check.body") bytes, same body as the backend"
}

# ---------------------------------------------------------------------------- servers

NGINX_TEMP_DIRS=()
nginx_v=$("$NGINX" -V 2>&1)
# Only the temp paths of modules this nginx has (an unknown directive is a config error).
for d in client_body proxy fastcgi uwsgi scgi; do
    [[ $nginx_v == *"--http-${d/_/-}-temp-path"* ]] && NGINX_TEMP_DIRS+=("$d")
done
WORKER_CONNECTIONS=$((CONNECTIONS * 2 + 256 > 1024 ? CONNECTIONS * 2 + 256 : 1024))
UPSTREAM_KEEPALIVE=$((CONNECTIONS > 64 ? CONNECTIONS : 64))

# nginx_conf DIR HTTP_BODY: a self-contained config whose files all live in DIR.
nginx_conf() {
    local dir=$1 body=$2 d
    mkdir -p "$dir"
    {
        echo "worker_processes 1;"
        echo "pid $dir/nginx.pid;"
        echo "lock_file $dir/nginx.lock;"
        echo "error_log $dir/error.log warn;"
        echo "events { worker_connections $WORKER_CONNECTIONS; }"
        echo "http {"
        echo "    access_log off;"
        echo "    keepalive_requests 1000000;"
        for d in "${NGINX_TEMP_DIRS[@]}"; do echo "    ${d}_temp_path $dir/${d}_temp;"; done
        printf '%s\n' "$body"
        echo "}"
    } >"$dir/nginx.conf"
}

# nginx_pids MASTER: "master,worker,..." (workers are the master's children).
nginx_pids() {
    local master=$1 kids
    kids=$(pgrep -P "$master" 2>/dev/null || cat "/proc/$master/task/$master/children" 2>/dev/null || true)
    echo "$master${kids:+ $kids}" | xargs | tr ' ' ','
}

# start_nginx NAME CPU_PIN_VAR HTTP_BODY URL: sets SRV_PID, SRV_PIDS.
start_nginx() {
    local name=$1 pinvar=$2 body=$3 url=$4 dir=$TMP/$1
    local -n pin=$pinvar
    nginx_conf "$dir" "$body"
    "$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" 2>"$dir/check.log" ||
        die "$name: nginx rejects its config: $(cat "$dir/check.log")"
    "${pin[@]}" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
        </dev/null >"$dir/stdout.log" 2>&1 &
    SRV_PID=$!
    track "$SRV_PID" TERM
    wait_http "$name" "$SRV_PID" "$url" "$dir/error.log"
    SRV_PIDS=$(nginx_pids "$SRV_PID")
    local p ps
    IFS=, read -ra ps <<<"$SRV_PIDS"
    for p in "${ps[@]}"; do track "$p" TERM; done
}

start_backend() {
    BACKEND_PORT=$(free_port)
    BACKEND_URL=http://127.0.0.1:$BACKEND_PORT$URL_PATH
    local body
    body=$(<"$TMP/body.json")
    start_nginx backend LOAD_PIN "    server {
        listen 127.0.0.1:$BACKEND_PORT;
        default_type application/json;
        location / { return 200 '$body'; }
        # The tracing rows' collector: takes each OTLP export and answers an empty success
        # (decoding is the collector's cost, not varco's).
        location = /v1/traces { client_max_body_size 64m; return 200; }
    }" "$BACKEND_URL"
    BACKEND_PID=$SRV_PID
    BACKEND_PIDS=$SRV_PIDS
}

start_nginx_proxy() {
    local port
    port=$(free_port)
    SRV_URL=http://127.0.0.1:$port$URL_PATH
    start_nginx nginx PROXY_PIN "    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" "$SRV_URL"
}

# mint_token: sets JWT_TOKEN to a valid RS256 token of the bench issuer, keys in $TMP/jose
# (tests/tools/jwt_tool.py, an independent implementation).
mint_token() {
    local keys=$TMP/jose
    mkdir -p "$keys"
    [[ -f $keys/jwks.json ]] || python3 "$ROOT/tests/tools/jwt_tool.py" keygen "$keys" bench RS256
    JWT_TOKEN=$(python3 "$ROOT/tests/tools/jwt_tool.py" mint "$keys" bench RS256 \
        '{"iss": "https://login.bench", "aud": "varco-bench", "sub": "citizen", "exp": "+3600", "scope": "bench"}')
}

# start_varco_jwt NAME: varco whose route (the same path as the plain one, so only the access
# differs) needs a bearer JWT of an issuer whose keys come from a JWKS file; sets JWT_TOKEN.
start_varco_jwt() {
    local name=$1 port admin cfg=$TMP/$1.yaml logf=$TMP/$1.log keys=$TMP/jose
    read -r port admin < <(python3 "$BENCH_DIR/bench.py" ports 2)
    mint_token
    SRV_URL=http://127.0.0.1:$port$URL_PATH
    cat >"$cfg" <<EOF
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$port"}]
admin: {address: "127.0.0.1:$admin"}
tenants:
  - id: bench
    name: Bench
    issuers:
      login: {issuer: "https://login.bench", audiences: [varco-bench], jwks_file: "$keys/jwks.json", algorithms: [RS256]}
    upstreams:
      backend: {servers: ["127.0.0.1:$BACKEND_PORT"]}
    routes:
      - {name: jwt, path: "/{*rest}", methods: [GET], access: {jwt: {issuers: [login], scopes: [bench]}}, to: {upstream: backend}}
EOF
    WAIT_HEADERS=(-H "Authorization: Bearer $JWT_TOKEN")
    serve_varco "$name" "$cfg" "$logf"
    WAIT_HEADERS=()
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$SRV_URL")
    [[ $code == 401 ]] || die "$name: the JWT route answered $code without a token"
}

# start_pingora_minimal [--headers]: --headers does varco's header work (see its main.rs).
start_pingora_minimal() {
    local port logf=$TMP/pingora-minimal.log
    port=$(free_port)
    SRV_URL=http://127.0.0.1:$port$URL_PATH
    "${PROXY_PIN[@]}" "$PINGORA_MINIMAL" --listen "127.0.0.1:$port" --backend "127.0.0.1:$BACKEND_PORT" \
        --threads 1 "$@" </dev/null >"$logf" 2>&1 &
    SRV_PID=$!
    SRV_PIDS=$SRV_PID
    track "$SRV_PID" INT  # pingora: SIGINT = fast shutdown, SIGTERM = graceful (slow)
    wait_http pingora-minimal "$SRV_PID" "$SRV_URL" "$logf"
}

# start_pingap NAME PLUGINS: pingap on the same route (bench/pingap_conf.sh), pinned like the
# other proxies.
# shellcheck source=bench/pingap_conf.sh
source "$BENCH_DIR/pingap_conf.sh"
start_pingap() {
    local name=$1 plugins=$2 port dir=$TMP/$1
    mkdir -p "$dir"
    port=$(free_port)
    SRV_URL=http://127.0.0.1:$port$URL_PATH
    pingap_toml "$dir" "$port" "$BACKEND_PORT" "$plugins" >"$dir/pingap.toml"
    "${PROXY_PIN[@]}" "$PINGAP" -c "$dir/pingap.toml" </dev/null >"$dir/stdout.log" 2>&1 &
    SRV_PID=$!
    SRV_PIDS=$SRV_PID
    track "$SRV_PID" INT
    wait_http "$name" "$SRV_PID" "$SRV_URL" "$dir/stdout.log"
}

# serve_varco NAME CFG LOGF: checks the config, starts varco pinned, waits until it answers.
serve_varco() {
    local name=$1 cfg=$2 logf=$3
    "$VARCO" check --config "$cfg" >"$TMP/$name.check" 2>&1 ||
        die "$name: varco check rejects the bench config: $(cat "$TMP/$name.check")"
    # stdout carries the access log: discarded, so only the cost of producing it is measured.
    "${PROXY_PIN[@]}" "$VARCO" serve --config "$cfg" </dev/null >/dev/null 2>"$logf" &
    SRV_PID=$!
    SRV_PIDS=$SRV_PID
    track "$SRV_PID" INT
    wait_http "$name" "$SRV_PID" "$SRV_URL" "$logf"
}

# start_varco NAME ACCESS_LOG(true|false) [ROUTE_EXTRA] [SERVER_EXTRA]: ROUTE_EXTRA is YAML added
# to the route (e.g. rate limits), SERVER_EXTRA to `server` (e.g. the audit trail).
start_varco() {
    local name=$1 access_log=$2 extra=${3:-} server_extra=${4:-} port admin cfg=$TMP/$1.yaml logf=$TMP/$1.log
    read -r port admin < <(python3 "$BENCH_DIR/bench.py" ports 2)
    SRV_URL=http://127.0.0.1:$port$URL_PATH
    cat >"$cfg" <<EOF
server: {threads: 1, access_log: $access_log$server_extra}
listeners: [{name: public, address: "127.0.0.1:$port"}]
admin: {address: "127.0.0.1:$admin"}
tenants:
  - id: bench
    name: Bench
    upstreams:
      backend: {servers: ["127.0.0.1:$BACKEND_PORT"]}
    routes:
      - {name: plain, path: "/{*rest}", methods: [GET], access: public, to: {upstream: backend}$extra}
EOF
    serve_varco "$name" "$cfg" "$logf"
}

stop_server() {
    local ps
    IFS=, read -ra ps <<<"$SRV_PIDS"
    stop_pids "${ps[@]}"
}

# ---------------------------------------------------------------------------- measurement

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
RUN=0

# bench_target NAME PIDS URL [EXTRA WRK ARGS...]
#   PIDS: comma-separated processes whose CPU and RSS are charged to this row (they must be
#   the server processes themselves, not wrappers). Extra arguments go to wrk before the URL,
#   e.g. -H "Authorization: Bearer $TOKEN" for an authenticated route.
bench_target() {
    local name=$1 pids=$2 url=$3
    shift 3
    local -a pl extra=("$@")
    local p out=$TMP/wrk-$RUN-${name//[^A-Za-z0-9_.-]/_}.txt
    IFS=, read -ra pl <<<"$pids"
    for p in "${pl[@]}"; do alive "$p" || die "$name: pid $p is not running"; done

    local rss_idle
    rss_idle=$(rss_kb "${pl[@]}")

    log "$name: warm-up $WARMUP"
    "${LOAD_PIN[@]}" "$WRK" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${extra[@]}" "$url" \
        >"$out.warmup" 2>&1 || die "$name: wrk warm-up failed: $(cat "$out.warmup")"

    log "$name: measuring $DURATION, $CONNECTIONS connections"
    local c0 c1 r peak=0 samples=0 i=0 wpid pc0 pc1 lc0 lc1
    c0=$(cpu_ticks "${pl[@]}")
    pc0=$(core_ticks "$PROXY_CPU")
    lc0=$(core_ticks "$LOAD_CPU")
    "${LOAD_PIN[@]}" "$WRK" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${extra[@]}" "$url" \
        >"$out" 2>&1 &
    wpid=$!
    track "$wpid" TERM
    while alive "$wpid"; do
        sleep 0.1
        if ((++i % 5 == 0)) && alive "$wpid"; then
            r=$(rss_kb "${pl[@]}")
            samples=$((samples + 1))
            if ((r > peak)); then peak=$r; fi
        fi
    done
    wait "$wpid" || die "$name: wrk failed: $(cat "$out")"
    untrack "$wpid"
    c1=$(cpu_ticks "${pl[@]}")
    pc1=$(core_ticks "$PROXY_CPU")
    lc1=$(core_ticks "$LOAD_CPU")
    for p in "${pl[@]}"; do alive "$p" || die "$name: pid $p died under load"; done
    r=$(rss_kb "${pl[@]}")
    samples=$((samples + 1))
    if ((r > peak)); then peak=$r; fi

    python3 "$BENCH_DIR/bench.py" record --run "$RUN" --name "$name" --pids "$pids" --url "$url" \
        --wrk "$out" --cpu-ticks $((c1 - c0)) --clk-tck "$CLK_TCK" \
        --rss-idle-kb "$rss_idle" --rss-load-kb "$peak" --rss-samples "$samples" \
        --pinned "$PIN" --proxy-core "$pc0 $pc1" --load-core "$lc0 $lc1" >>"$RESULTS"
}

# run_target NAME: start the server, bench it, stop it. Add new rows here.
run_target() {
    case $1 in
    direct) bench_target direct "$BACKEND_PIDS" "$BACKEND_URL" ;;
    nginx) start_nginx_proxy; bench_target nginx "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    pingora-minimal) start_pingora_minimal; bench_target pingora-minimal "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    pingora-minimal+headers) start_pingora_minimal --headers; bench_target pingora-minimal+headers "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    varco) start_varco varco false; bench_target varco "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    varco+log) start_varco varco+log true; bench_target varco+log "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    # Every call a record of the audit trail (chained, synced once per batch by its thread).
    varco+audit)
        start_varco varco+audit false ", audit: true" ", audit: {dir: \"$TMP/audit\"}"
        bench_target varco+audit "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    # Tracing on, every request sampled, spans exported over OTLP/HTTP to a collector that
    # takes them (nginx on the load CPU); and the same with 1 % of the traces sampled.
    varco+trace100)
        start_varco varco+trace100 false "" ", tracing: {endpoint: \"http://127.0.0.1:$BACKEND_PORT/v1/traces\", sampler: traceidratio, ratio: 1, batch_delay: 200ms}"
        bench_target varco+trace100 "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    varco+trace1)
        start_varco varco+trace1 false "" ", tracing: {endpoint: \"http://127.0.0.1:$BACKEND_PORT/v1/traces\", sampler: traceidratio, ratio: 0.01, batch_delay: 200ms}"
        bench_target varco+trace1 "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    # Two limits that are never exceeded: per client address and for the whole route.
    varco+ratelimit)
        start_varco varco+ratelimit false ", rate_limits: [{per: client_ip, requests: 1000000000, period: 1s}, {per: route, requests: 1000000000, period: 1s}]"
        bench_target varco+ratelimit "$SRV_PIDS" "$SRV_URL"; stop_server ;;
    # A bearer-JWT route with one valid token: after the first request it is served from the
    # verified-token cache.
    varco+jwt)
        if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
            log "varco+jwt: skipped (pip install pyjwt cryptography)"
        else
            start_varco_jwt varco+jwt
            bench_target varco+jwt "$SRV_PIDS" "$SRV_URL" -H "Authorization: Bearer $JWT_TOKEN"; stop_server
        fi ;;
    # The plain route sent the very request varco+jwt gets (the same token, forwarded as is):
    # tells the cost of a 600-byte header on the wire from the cost of verifying it.
    varco+bearer)
        if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
            log "varco+bearer: skipped (pip install pyjwt cryptography)"
        else
            mint_token
            start_varco varco+bearer false
            bench_target varco+bearer "$SRV_PIDS" "$SRV_URL" -H "Authorization: Bearer $JWT_TOKEN"; stop_server
        fi ;;
    pingap|pingap+jwt|pingap+ratelimit)
        if [[ -z $PINGAP ]]; then
            log "$1: skipped (no pingap: cargo install pingap --version 0.13.1 --locked, needs protoc; or PINGAP=/path)"
        elif [[ $1 == pingap+jwt ]] && ! python3 -c 'import jwt' 2>/dev/null; then
            log "$1: skipped (pip install pyjwt)"
        else
            case $1 in
            pingap) start_pingap pingap ""; bench_target pingap "$SRV_PIDS" "$SRV_URL" ;;
            pingap+ratelimit) start_pingap pingap+ratelimit '"limit_ip", "limit_route"'; bench_target pingap+ratelimit "$SRV_PIDS" "$SRV_URL" ;;
            pingap+jwt)
                PINGAP_TOKEN=$(pingap_token)
                WAIT_HEADERS=(-H "Authorization: Bearer $PINGAP_TOKEN")
                start_pingap pingap+jwt '"jwt"'
                WAIT_HEADERS=()
                [[ $(curl -s -o /dev/null -w '%{http_code}' "$SRV_URL") == 401 ]] || die "pingap+jwt: answered without a token"
                bench_target pingap+jwt "$SRV_PIDS" "$SRV_URL" -H "Authorization: Bearer $PINGAP_TOKEN" ;;
            esac
            stop_server
        fi ;;
    *) die "unknown target '$1' (known: direct nginx pingora-minimal pingora-minimal+headers varco varco+log varco+audit varco+trace100 varco+trace1 varco+ratelimit varco+bearer varco+jwt pingap pingap+jwt pingap+ratelimit)" ;;
    esac
}

# ---------------------------------------------------------------------------- main

python3 "$BENCH_DIR/bench.py" body >"$TMP/body.json"
start_backend

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 "$BENCH_DIR/bench.py" meta \
    "timestamp=$STAMP" \
    "git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo -dirty)" \
    "host=$(uname -n)" "kernel=$(uname -r)" "nproc=$NPROC" "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)" \
    "cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
    "nginx=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" "wrk=$("$WRK" -v 2>&1 | head -n1 | awk '{print $2}')" \
    "duration=$DURATION" "warmup=$WARMUP" "connections=$CONNECTIONS" "wrk_threads=$WRK_THREADS" \
    "runs=$RUNS" "targets=$TARGETS" "pinned=$PIN" "proxy_cpu=$PROXY_CPU" "load_cpu=$LOAD_CPU" \
    "body_bytes=$(wc -c <"$TMP/body.json")" "url_path=$URL_PATH" >"$TMP/meta.json"

log "backend: nginx on 127.0.0.1:$BACKEND_PORT (pids $BACKEND_PIDS)$([[ $PIN == 1 ]] && echo ", proxies on CPU $PROXY_CPU, wrk + backend on CPU $LOAD_CPU")"
for ((RUN = 1; RUN <= RUNS; RUN++)); do
    log "=== run $RUN/$RUNS ==="
    # Odd runs go in the given order, even runs in reverse, so a slow drift of the machine's
    # speed does not always favour the same targets.
    read -ra order <<<"$TARGETS"
    if ((RUN % 2 == 0)); then
        for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_target "${order[i]}"; done
    else
        for t in "${order[@]}"; do run_target "$t"; done
    fi
    echo
    python3 "$BENCH_DIR/bench.py" table "$RESULTS" "$RUN"
done

mkdir -p "$BENCH_DIR/out"
echo
python3 "$BENCH_DIR/bench.py" report "$RESULTS" "$BENCH_DIR/out/results-$STAMP.json" "$TMP/meta.json"

# JWT verification itself (the varco+jwt row is served from the verified-token cache): fresh
# verifications per second on one core, RS256 and ES256, from an ignored test of varco-proxy.
if [[ ${BENCH_JWT_VERIFY:-1} == 1 ]] && python3 -c 'import jwt, cryptography' 2>/dev/null; then
    keys=$TMP/jose-verify
    mkdir -p "$keys"
    python3 "$ROOT/tests/tools/jwt_tool.py" keygen "$keys" rs RS256
    python3 "$ROOT/tests/tools/jwt_tool.py" keygen "$keys" ec ES256
    claims='{"iss": "https://login.bench", "aud": "varco-bench", "sub": "citizen", "exp": "+3600"}'
    python3 "$ROOT/tests/tools/jwt_tool.py" mint "$keys" rs RS256 "$claims" >"$keys/token-rs256"
    python3 "$ROOT/tests/tools/jwt_tool.py" mint "$keys" ec ES256 "$claims" >"$keys/token-es256"
    echo
    log "measuring JWT verification (builds varco-proxy's tests in release mode)"
    (cd "$ROOT" && JWT_BENCH_DIR=$keys "${PROXY_PIN[@]}" "${CARGO:-cargo}" test --release -q -p varco-proxy --lib \
        -- --ignored --nocapture jwt_verify_throughput 2>/dev/null | grep '^jwt-verify') || log "JWT verification measurement failed"
fi
