#!/usr/bin/env bash
# SIUSS benchmark: benefits accepted per second at submission, everything included (JSON to
# flow XML, the official XSD checked by libxml2, the flow synced to disk before the 201),
# against the same request answered by varco's `status`-like cheapest route in the same run.
#
#   bench/siuss.sh                  # 2 runs of 10 s
#   BENCH_RUNS=1 BENCH_DURATION=5s bench/siuss.sh
#
# Needs wrk, curl, python3.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${BENCH_RUNS:-2}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
die() { printf 'bench-siuss: error: %s\n' "$*" >&2; exit 1; }
for t in wrk curl python3; do command -v "$t" >/dev/null || die "missing $t"; done
[[ ${BENCH_BUILD:-1} == 1 ]] && { (cd "$ROOT" && cargo build --release -q -p varco) || die "build failed"; }
VARCO=$TARGET_DIR/release/varco

WORK=$(mktemp -d /tmp/varco-bench-siuss.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

KEY=bench-0123456789abcdef0123456789abcdef
HASH=$(python3 -c "import hashlib,sys; print('sha256:' + hashlib.sha256(sys.argv[1].encode()).hexdigest())" "$KEY")
PORT=$(port); ADMIN=$(port)
cat >"$WORK/varco.yaml" <<YML
server: {threads: 1, access_log: false, events: {dir: "$WORK/events"}}
listeners: [{name: public, address: "127.0.0.1:$PORT"}]
admin: {address: "127.0.0.1:$ADMIN"}
tenants:
  - id: c_e783
    name: Macerata
    siuss: {codice_ente: E783, denominazione: Comune di Macerata, cf_operatore: RSSMRA80A01H501U, dir: "$WORK/siuss"}
    api_keys: [{name: bench, hash: "$HASH"}]
    routes:
      - {name: siuss, path: "/siuss/{*rest}", methods: [GET, POST], access: {api_key: {}}, to: {adapter: {kind: siuss, side: back_office}}}
YML
python3 - "$WORK" "$KEY" <<'PY'
import json, sys
d, key = sys.argv[1], sys.argv[2]
body = {"tipo": "PS_PSA_SINA", "beneficiario": {
    "CodiceFiscale": "AAABBB39M66A351C",
    "Anagrafica": {"AnnoNascita": "1939", "Genere": "2", "CodiceCittadinanza": "380", "Nome": "BBB", "LuogoNascita": "A351", "Cognome": "AAA"},
    "Indirizzo": {"CodiceComune": "068001", "CodiceNazione": "380", "CodiceRegione": "01"},
    "PrestazioniSociali": {"CaratterePrestazione": "1", "AreaUtenza": "2", "TipoOperazione": "I", "DataInizioPrestazione": "2026-10-14",
        "CodicePrestazione": "A1.16", "DenominazionePrestazione": "Contributi economici per servizio trasporto", "ProtocolloDomanda": "P-1",
        "ImportoMensile": "101.23", "PeriodoErogazione": "1", "PresaCarico": "1", "PresenzaProvaMezzi": "2",
        "SINA": {"Mobilita": "1", "AttivitaVitaQuotidiana": "1", "DisturbiComportamentali": "1", "AreaReddituale": "1", "AreaSupporto": "1",
                 "FonteDerivazioneValutazione": "1", "StrumentoValutazione": "1",
                 "NecessitaInterventiSociali": {"CodicePrestazione": ["A2.17", "A2.18"]}}}}}
open(d + "/body.json", "w").write(json.dumps(body))
open(d + "/submit.lua", "w").write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-Api-Key"] = %s\nwrk.body = %s\n' % (json.dumps(key), json.dumps(json.dumps(body))))
PY
"$VARCO" serve --config "$WORK/varco.yaml" >"$WORK/varco.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$ADMIN/readyz"
code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H "X-Api-Key: $KEY" -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "http://127.0.0.1:$PORT/siuss/prestazioni")
[[ $code == 201 ]] || { cat "$WORK/first.json" "$WORK/varco.log" >&2; die "varco did not accept the benefit ($code)"; }


rows=()
for run in $(seq "$RUNS"); do
    read -r s_rps s_50 s_99 _ < <(run_wrk "http://127.0.0.1:$PORT/status")
    read -r v_rps v_50 v_99 _ < <(run_wrk "http://127.0.0.1:$PORT/siuss/prestazioni" -s "$WORK/submit.lua")
    rows+=("$s_rps $v_rps $v_50 $v_99")
    printf '| run %s (%s connections, 1 worker thread) | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' "$run" "$CONNECTIONS"
    printf '| GET /status (the cheapest answer) | %.0f | %.2f | %.2f |\n' "$s_rps" "$s_50" "$s_99"
    printf '| POST /siuss/prestazioni (XSD + fsync) | %.0f | %.2f | %.2f |\n' "$v_rps" "$v_50" "$v_99"
done
kept=$(wc -l <"$WORK/siuss/c_e783/flows.log")
printf '\nflows kept after the runs: %s (each one synced before its 201)\n' "$kept"
if ((RUNS > 1)); then
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = [[float(x) for x in l.split()] for l in sys.stdin if l.strip()]
print("ranges: submissions %.0f–%.0f flows/s (p99 %.2f–%.2f ms); /status %.0f–%.0f req/s" % (
    min(x[1] for x in r), max(x[1] for x in r), min(x[3] for x in r), max(x[3] for x in r), min(x[0] for x in r), max(x[0] for x in r)))'
fi
