#!/usr/bin/env bash
# pagoPA benchmark: paVerifyPaymentNotice through varco (SOAP parse, XSD-shaped checks, the
# back-office call, the SOAP answer) against calling the back-office directly, in the same run.
# The back-office is nginx answering the debt position from memory.
#
#   bench/pagopa.sh                 # 2 runs of 10 s
#   BENCH_RUNS=1 BENCH_DURATION=5s bench/pagopa.sh
#
# Needs nginx, wrk, curl, python3.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
log() { printf 'bench-pagopa: %s\n' "$*" >&2; }
die() { printf 'bench-pagopa: error: %s\n' "$*" >&2; exit 1; }
for t in nginx wrk curl python3; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y nginx-light wrk curl python3)"; done
[[ ${BENCH_BUILD:-1} == 1 ]] && { (cd "$ROOT" && cargo build --release -q -p varco) || die "build failed"; }
VARCO=$TARGET_DIR/release/varco

WORK=$(mktemp -d /tmp/varco-bench-pagopa.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

SEG=12
NOTICE=$(python3 -c "f='3${SEG}0000000000001'; print(f + '%02d' % (int(f) % 93))")
IUV=${NOTICE:1}
BO=$(port)
python3 - "$WORK" "$NOTICE" <<'PY'
import json, sys
d, notice = sys.argv[1], sys.argv[2]
pos = {"status": "payable", "amount_cents": 12000, "due_date": "2026-12-31", "description": "TARI 2026 - rata unica",
       "debtor": {"kind": "F", "fiscal_code": "RSSMRA80A01H501U", "full_name": "Mario Rossi"},
       "transfers": [{"id": 1, "amount_cents": 12000, "fiscal_code_pa": "00093120434", "iban": "IT60X0542811101000000123456",
                      "remittance_information": "TARI 2026", "category": "9/0101100IM/"}]}
open(d + "/position.json", "w").write(json.dumps(pos))
soap = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd">'
        '<soapenv:Body><pafn:paVerifyPaymentNoticeReq><idPA>00093120434</idPA><idBrokerPA>00093120434</idBrokerPA>'
        '<idStation>00093120434_01</idStation><qrCode><fiscalCode>00093120434</fiscalCode><noticeNumber>%s</noticeNumber></qrCode>'
        '</pafn:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>' % notice)
open(d + "/verify.lua", "w").write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "text/xml"\nwrk.headers["SOAPAction"] = "paVerifyPaymentNotice"\nwrk.body = %s\n' % json.dumps(soap))
PY
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$BO; default_type application/json; location /debt-positions/ { return 200 '$(cat "$WORK/position.json")'; } } }
NGX
nginx -p "$WORK" -c "$WORK/nginx.conf" & pids+=($!)
wait_up "http://127.0.0.1:$BO/debt-positions/$IUV"

PORT=$(port); ADMIN=$(port)
cat >"$WORK/varco.yaml" <<YML
server: {threads: 1, access_log: false, events: {dir: "$WORK/events"}}
listeners: [{name: public, address: "127.0.0.1:$PORT"}]
admin: {address: "127.0.0.1:$ADMIN"}
tenants:
  - id: c_e783
    name: Macerata
    routes:
      - {name: pagopa, path: /pagopa/paForNode, methods: [POST], access: public,
         to: {adapter: {kind: pagopa, id_pa: "00093120434", id_broker_pa: "00093120434", id_station: "00093120434_01", segregation_code: "$SEG", company_name: "Comune di Macerata", backoffice_url: "http://127.0.0.1:$BO", receipts_dir: "$WORK/pagopa"}}}
YML
"$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$ADMIN/readyz"
curl -s -H 'SOAPAction: paVerifyPaymentNotice' --data-binary "$(python3 -c "import re,sys; print(re.search(r'wrk.body = (.*)', open('$WORK/verify.lua').read()).group(1).strip()[1:-1].encode().decode('unicode_escape'))")" "http://127.0.0.1:$PORT/pagopa/paForNode" | grep -q '<outcome>OK</outcome>' || die "varco did not answer OK"


rows=()
for run in $(seq "$RUNS"); do
    read -r d_rps d_50 d_99 _ < <(run_wrk "http://127.0.0.1:$BO/debt-positions/$IUV")
    read -r v_rps v_50 v_99 _ < <(run_wrk "http://127.0.0.1:$PORT/pagopa/paForNode" -s "$WORK/verify.lua")
    rows+=("$d_rps $d_50 $d_99 $v_rps $v_50 $v_99")
    printf '| run %s | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' "$run"
    printf '| back-office directly (GET position) | %.0f | %.2f | %.2f |\n' "$d_rps" "$d_50" "$d_99"
    printf '| paVerifyPaymentNotice through varco | %.0f | %.2f | %.2f |\n' "$v_rps" "$v_50" "$v_99"
    python3 -c "print('p99 added by varco: %.2f ms' % ($v_99 - $d_99))"
done
if ((RUNS > 1)); then
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = [[float(x) for x in l.split()] for l in sys.stdin if l.strip()]
print("\nranges: varco %.0f–%.0f req/s, p99 %.2f–%.2f ms; p99 added %.2f–%.2f ms" % (
    min(x[3] for x in r), max(x[3] for x in r), min(x[5] for x in r), max(x[5] for x in r),
    min(x[5] - x[2] for x in r), max(x[5] - x[2] for x in r)))'
fi
