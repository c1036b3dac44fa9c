#!/usr/bin/env bash
# PDND consumer benchmark: what varco adds to a call to a national e-service, and what the
# voucher cache saves. In the same run, with wrk:
#   1. the provider directly (nginx answering a fixed ANPR E002 answer): its own cost;
#   2. through varco's `anpr` adapter on an e-service without AUDIT_REST_02: the voucher comes
#      from the cache (PDND is asked once for the whole run), the body is signed
#      (INTEGRITY_REST_02, RS256) and the answer mapped;
#   3. the same with AUDIT_REST_02: a tracking evidence and a voucher bound to it per call, so
#      PDND's token endpoint (tests/tools/pdnd_peer.py, Python, checking every assertion) is
#      asked every time.
# Answers are not signature-checked here (nginx cannot sign); the tests prove those checks.
# Calls run side by side (`ordered: false`): C001's one-at-a-time default would measure the
# provider's latency, not varco.
#
#   bench/pdnd.sh                   # 2 runs of 10 s
#   BENCH_RUNS=1 BENCH_DURATION=5s bench/pdnd.sh
#
# Needs nginx, wrk, curl, python3 with pyjwt and cryptography.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
log() { printf 'bench-pdnd: %s\n' "$*" >&2; }
die() { printf 'bench-pdnd: error: %s\n' "$*" >&2; exit 1; }
for t in nginx wrk curl python3; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y nginx-light wrk curl python3)"; done
[[ ${BENCH_BUILD:-1} == 1 ]] && { (cd "$ROOT" && cargo build --release -q -p varco) || die "build failed"; }
VARCO=$TARGET_DIR/release/varco

WORK=$(mktemp -d /tmp/varco-bench-pdnd.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CF=RSSMRA80A01H501U
KEY=bench-0123456789abcdef0123456789abcdef
python3 "$ROOT/tests/tools/jwt_tool.py" keygen "$WORK" c_e783-pdnd RS256
PDND=$(port); PROVIDER=$(port); PORT=$(port); ADMIN=$(port)
AUD_PLAIN=https://eservice.example.it/plain/v1
AUD_AUDIT=https://eservice.example.it/audit/v1
python3 - "$WORK" "$AUD_PLAIN" "$AUD_AUDIT" "$CF" <<'PY'
import json, sys
d, plain, audit, cf = sys.argv[1:5]
json.dump({"issuer": "https://uat.interop.pagopa.it", "assertion_aud": "auth.uat.interop.pagopa.it/client-assertion",
           "expires_in": 600, "clients": {"client-bench": {"jwks_file": d + "/jwks.json", "purposes": {
               "purpose-plain": {"aud": plain}, "purpose-audit": {"aud": audit}}}}}, open(d + "/pdnd.json", "w"))
answer = {"idOperazioneANPR": "1", "listaSoggetti": {"datiSoggetto": [{
    "generalita": {"codiceFiscale": {"codFiscale": cf}, "cognome": "ROSSI", "nome": "MARIO", "sesso": "M", "dataNascita": "1980-01-01"},
    "residenza": [{"indirizzo": {"cap": "62100", "comune": {"nomeComune": "MACERATA", "codiceIstat": "043023"},
                                 "toponimo": {"specie": "VIA", "denominazioneToponimo": "ROMA"}, "numeroCivico": {"numero": "10"}}}]}]}}
open(d + "/answer.json", "w").write(json.dumps(answer))
PY
python3 "$ROOT/tests/tools/pdnd_peer.py" "$PDND" "$WORK/pdnd.json" >"$WORK/pdnd.log" 2>&1 & pids+=($!)
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$PROVIDER; default_type application/json; location / { return 200 '$(cat "$WORK/answer.json")'; } } }
NGX
nginx -p "$WORK" -c "$WORK/nginx.conf" & pids+=($!)
wait_up "http://127.0.0.1:$PROVIDER/anpr-service-e002"
wait_up "http://127.0.0.1:$PDND/.well-known/jwks.json"
HASH=$(python3 -c "import hashlib,sys; print('sha256:' + hashlib.sha256(sys.argv[1].encode()).hexdigest())" "$KEY")
cat >"$WORK/varco.yaml" <<YML
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$PORT"}]
admin: {address: "127.0.0.1:$ADMIN"}
tenants:
  - id: c_e783
    name: Macerata
    keys: [{kid: c_e783-pdnd, private_key: {file: "$WORK/c_e783-pdnd.pem"}}]
    pdnd: {client_id: client-bench, token_url: "http://127.0.0.1:$PDND/token.oauth2", assertion_audience: auth.uat.interop.pagopa.it/client-assertion,
           purposes: {plain: purpose-plain, audit: purpose-audit}}
    api_keys: [{name: bench, hash: "$HASH"}]
    routes:
      - {name: plain, path: "/plain/{*rest}", methods: [GET], access: {api_key: {}},
         to: {adapter: {kind: anpr, motivo: bench, residenza: {url: "http://127.0.0.1:$PROVIDER", purpose: plain, audience: "$AUD_PLAIN", audit: false, ordered: false}}}}
      - {name: audit, path: "/audit/{*rest}", methods: [GET], access: {api_key: {}},
         to: {adapter: {kind: anpr, motivo: bench, residenza: {url: "http://127.0.0.1:$PROVIDER", purpose: audit, audience: "$AUD_AUDIT", ordered: false}}}}
YML
"$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$ADMIN/readyz"
for r in plain audit; do
    curl -sf -H "X-Api-Key: $KEY" "http://127.0.0.1:$PORT/$r/residenza/$CF" | grep -q '"VIA ROMA"' || { cat "$WORK/varco.log" >&2; die "varco's $r route did not answer the residence"; }
done
issued() { curl -s "http://127.0.0.1:$PDND/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["issued"])'; }


rows=()
for run in $(seq "$RUNS"); do
    read -r d_rps d_50 d_99 _ < <(run_wrk "http://127.0.0.1:$PROVIDER/anpr-service-e002")
    i0=$(issued)
    read -r c_rps c_50 c_99 c_n < <(run_wrk "http://127.0.0.1:$PORT/plain/residenza/$CF" -H "X-Api-Key: $KEY")
    i1=$(issued)
    read -r a_rps a_50 a_99 a_n < <(run_wrk "http://127.0.0.1:$PORT/audit/residenza/$CF" -H "X-Api-Key: $KEY")
    i2=$(issued)
    rows+=("$d_rps $d_50 $d_99 $c_rps $c_50 $c_99 $a_rps $a_50 $a_99")
    printf '| run %s (%s connections) | req/s | p50 ms | p99 ms | vouchers from PDND |\n|---|---:|---:|---:|---:|\n' "$run" "$CONNECTIONS"
    printf '| provider directly (nginx) | %.0f | %.2f | %.2f | – |\n' "$d_rps" "$d_50" "$d_99"
    printf '| varco, cached voucher (INTEGRITY_REST_02) | %.0f | %.2f | %.2f | %s for %s calls |\n' "$c_rps" "$c_50" "$c_99" "$((i1 - i0))" "$c_n"
    printf '| varco, voucher per call (+ AUDIT_REST_02) | %.0f | %.2f | %.2f | %s for %s calls |\n' "$a_rps" "$a_50" "$a_99" "$((i2 - i1))" "$a_n"
    python3 -c "print('p50 added by varco with a cached voucher: %.2f ms; a voucher per call costs %.1fx the cached call (p50)' % ($c_50 - $d_50, $a_50 / $c_50))"
done
if ((RUNS > 1)); then
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = [[float(x) for x in l.split()] for l in sys.stdin if l.strip()]
print("\nranges: cached %.0f–%.0f req/s (p50 +%.2f–%.2f ms over the provider); per-call voucher %.0f–%.0f req/s, p50 %.2f–%.2f ms" % (
    min(x[3] for x in r), max(x[3] for x in r), min(x[4] - x[1] for x in r), max(x[4] - x[1] for x in r),
    min(x[6] for x in r), max(x[6] for x in r), min(x[7] for x in r), max(x[7] for x in r)))'
fi
