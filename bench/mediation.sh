#!/usr/bin/env bash
# Mediation benchmark: what JSON → SOAP → JSON costs. The SOAP back-office is nginx answering
# spyne's own getPratica answer (adapters/mediation/testdata) at once, so the figures are
# varco's work, not a back-office's. Three rows in the same run:
#   direct      the SOAP request straight to the back-office (wrk → nginx)
#   passthrough the same SOAP request through varco as a plain proxied route
#   mediated    GET /pratiche/{id} → varco builds the envelope from the WSDL, calls the pool,
#               checks the answer against the WSDL's schema and answers JSON
#
#   bench/mediation.sh                  # 2 runs of 10 s
#   BENCH_RUNS=1 BENCH_DURATION=5s bench/mediation.sh
#
# Needs wrk, curl, python3, nginx.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
die() { printf 'bench-mediation: error: %s\n' "$*" >&2; exit 1; }
for t in wrk curl python3; do command -v "$t" >/dev/null || die "missing $t"; done
[[ -x $NGINX ]] || die "missing nginx"
[[ ${BENCH_BUILD:-1} == 1 ]] && { (cd "$ROOT" && cargo build --release -q -p varco) || die "build failed"; }
VARCO=$TARGET_DIR/release/varco

WORK=$(mktemp -d /tmp/varco-bench-mediation.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

BO=$(port); PORT=$(port); ADMIN=$(port)
mkdir -p "$WORK/nginx"
python3 - "$WORK" "$ROOT" "$BO" <<'PY'
import sys
work, root, port = sys.argv[1:4]
answer = open(root + "/adapters/mediation/testdata/getPratica.response.xml").read().strip()
body = answer.replace("\\", "\\\\").replace('"', '\\"')
conf = f"""worker_processes 1;
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {work}/nginx/body;
    server {{
        listen 127.0.0.1:{port};
        location /soap11 {{ default_type "text/xml; charset=utf-8"; return 200 "{body}"; }}
    }}
}}
"""
open(work + "/nginx/nginx.conf", "w").write(conf)
request = '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:comune:pratiche"><s:Body><t:getPratica><t:id>P-2026-0001</t:id></t:getPratica></s:Body></s:Envelope>'
open(work + "/soap.lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "text/xml; charset=utf-8"\nwrk.headers["SOAPAction"] = "\\"getPratica\\""\nwrk.body = %r\n' % request)
PY
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/out.log" 2>&1 &
pids+=($!)
cat >"$WORK/varco.yaml" <<YML
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$PORT"}]
admin: {address: "127.0.0.1:$ADMIN"}
tenants:
  - id: c_a662
    name: Bari
    upstreams:
      bo: {servers: ["127.0.0.1:$BO"]}
    routes:
      - {name: passthrough, path: /soap11, methods: [POST], access: public, to: {upstream: bo}}
      - name: mediated
        path: "/pratiche/{id}"
        methods: [GET]
        access: public
        to: {adapter: {kind: soap, upstream: bo, wsdl: "$ROOT/adapters/mediation/testdata/pratiche.wsdl", operation: getPratica}}
YML
"$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$ADMIN/readyz"
wait_up "http://127.0.0.1:$BO/soap11"
first=$(curl -s "http://127.0.0.1:$PORT/pratiche/P-2026-0001")
[[ $first == *'"importo":152.5'* ]] || { echo "$first"; cat "$WORK/varco.log" >&2; die "the mediated route does not answer the pratica"; }

rows=()
for run in $(seq "$RUNS"); do
    read -r d_rps d_50 d_99 _ < <(run_wrk "http://127.0.0.1:$BO/soap11" -s "$WORK/soap.lua")
    read -r p_rps p_50 p_99 _ < <(run_wrk "http://127.0.0.1:$PORT/soap11" -s "$WORK/soap.lua")
    read -r m_rps m_50 m_99 _ < <(run_wrk "http://127.0.0.1:$PORT/pratiche/P-2026-0001")
    rows+=("$d_rps $p_rps $m_rps $p_50 $m_50")
    printf '| run %s (%s connections, 1 worker thread) | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' "$run" "$CONNECTIONS"
    printf '| direct: SOAP to the back-office | %.0f | %.2f | %.2f |\n' "$d_rps" "$d_50" "$d_99"
    printf '| passthrough: SOAP through varco | %.0f | %.2f | %.2f |\n' "$p_rps" "$p_50" "$p_99"
    printf '| mediated: JSON → SOAP → JSON | %.0f | %.2f | %.2f |\n' "$m_rps" "$m_50" "$m_99"
    python3 -c 'import sys; d,p,m=map(float,sys.argv[1:4]); print("mediated = %.2f× passthrough, %.2f× direct (req/s)" % (m/p, m/d))' "$d_rps" "$p_rps" "$m_rps"
done
if ((RUNS > 1)); then
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = [[float(x) for x in l.split()] for l in sys.stdin if l.strip()]
print("ranges: mediated %.0f–%.0f req/s = %.2f–%.2f× passthrough (%.0f–%.0f), p50 +%.2f–%.2f ms over passthrough" % (
    min(x[2] for x in r), max(x[2] for x in r), min(x[2]/x[1] for x in r), max(x[2]/x[1] for x in r),
    min(x[1] for x in r), max(x[1] for x in r), min(x[4]-x[3] for x in r), max(x[4]-x[3] for x in r)))'
fi
