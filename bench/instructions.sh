#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: unlike req/s and CPU time,
# the count does not depend on what else the shared machine is doing, so small differences
# between varco and the references are visible. Each proxy runs twice under callgrind with a
# short and a long wrk load; (Ir_long - Ir_short) / (requests_long - requests_short) removes
# start-up and shutdown from the figure.
#
#   bench/instructions.sh   # pingora-minimal, pingora-minimal --headers (the same header work as
#                           # varco), varco, varco with access log
#   BENCH_BUILD=0 bench/instructions.sh
#   BENCH_KEEP=/tmp/prof INSTR_TARGETS="varco varco+jwt" bench/instructions.sh
#   INSTR_TARGETS="varco varco+trace100 varco+trace1" bench/instructions.sh
#                           # tracing on (all traces / 1 %), the export thread counted too
#                           # keeps the callgrind files for callgrind_annotate
#   INSTR_TARGETS="varco+events" bench/instructions.sh
#                           # POST /events, one CloudEvent per request into the outbox
#                           # (API key, contract check, fdatasync; the writer thread counted)
#   INSTR_TARGETS="pingap pingap+jwt pingap+ratelimit" bench/instructions.sh
#                           # the peer gateway on pingora, if `pingap` is on PATH (or PINGAP=)
#   INSTR_TARGETS="varco varco+session" bench/instructions.sh
#                           # a route for logged-in citizens: the session cookie looked up in
#                           # memory, the identity headers written (needs the SPID peer's venv,
#                           # which .ci/run makes; each run logs in once through the reference OP,
#                           # which the long-minus-short difference cancels)
#   VARCO=/path/to/old/varco bench/instructions.sh   # another build of varco (before/after)
#   PM_READ_BUFFER=0 bench/instructions.sh           # pingora-minimal without its read buffer
#
# Needs valgrind, nginx, wrk, curl (apt-get install -y valgrind nginx-light wrk curl).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SHORT=${BENCH_SHORT:-4s}
LONG=${BENCH_LONG:-12s}
for t in valgrind nginx wrk curl python3; do
    command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y valgrind nginx-light wrk curl" >&2; exit 1; }
done
if [[ ${BENCH_BUILD:-1} == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p varco -p pingora-minimal)
fi
VARCO=${VARCO:-$TARGET_DIR/release/varco}
# PM_READ_BUFFER=0: the pingora-minimal rows without pingora's 64 KiB read buffer per
# connection, as varco's plain listeners read by default.
PM_ARGS=(); [[ -n ${PM_READ_BUFFER:-} ]] && PM_ARGS=(--read-buffer "$PM_READ_BUFFER")
PINGAP=${PINGAP:-$(command -v pingap || true)}
WORK=$(mktemp -d /tmp/varco-ir.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; sleep 1; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

BACKEND=$(port)
body=$(python3 -c 'print("{\"data\":\"" + "x"*1012 + "\"}")')
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$BACKEND; default_type application/json; location / { return 200 '$body'; }
    location = /v1/traces { client_max_body_size 64m; return 200; } } }
NGX
nginx -p "$WORK" -c "$WORK/nginx.conf" & pids+=($!)
wait_up "http://127.0.0.1:$BACKEND/"

varco_conf() { # $1 port, $2 access_log, $3 extra route YAML, $4 extra server YAML
    cat <<YML
server: {threads: 1, access_log: $2${4:-}}
listeners: [{name: public, address: "127.0.0.1:$1"}]
admin: {address: "127.0.0.1:$(port)"}
tenants:
  - id: bench
    name: Bench
    upstreams: {backend: {servers: ["127.0.0.1:$BACKEND"]}}
    routes: [{name: plain, path: "/{*rest}", methods: [GET], access: public, to: {upstream: backend}${3:-}}]
YML
}

# A bearer-JWT route (RS256, JWKS file) and one valid token, minted by tests/tools/jwt_tool.py.
JWT_TOKEN=""
if python3 -c 'import jwt, cryptography' 2>/dev/null; then
    python3 "$ROOT/tests/tools/jwt_tool.py" keygen "$WORK" bench RS256
    JWT_TOKEN=$(python3 "$ROOT/tests/tools/jwt_tool.py" mint "$WORK" bench RS256 \
        '{"iss": "https://login.bench", "aud": "varco-bench", "sub": "citizen-1", "scope": "bench", "exp": "+3600", "iat": "+0"}')
fi
jwt_conf() { # $1 port
    cat <<YML
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$1"}]
admin: {address: "127.0.0.1:$(port)"}
tenants:
  - id: bench
    name: Bench
    issuers: {login: {issuer: "https://login.bench", audiences: [varco-bench], jwks_file: "$WORK/jwks.json", algorithms: [RS256]}}
    upstreams: {backend: {servers: ["127.0.0.1:$BACKEND"]}}
    routes: [{name: jwt, path: "/{*rest}", methods: [GET], access: {jwt: {issuers: [login], scopes: [bench]}}, to: {upstream: backend}}]
YML
}

# One event per request: an ente's `events` route behind an API key, the outbox on disk; every
# request gets ids of its own (a repeated id is stored once).
EVENT_KEY=bench-key-0123456789
events_conf() { # $1 port
    cat <<YML
server: {threads: 1, access_log: false, events: {dir: "$WORK/outbox-$1"}}
listeners: [{name: public, address: "127.0.0.1:$1"}]
admin: {address: "127.0.0.1:$(port)"}
tenants:
  - id: c_e783
    name: Macerata
    api_keys: [{name: bench, hash: "sha256:$(printf %s "$EVENT_KEY" | sha256sum | cut -d' ' -f1)"}]
    routes: [{name: events, path: /events, methods: [POST], access: {api_key: {}}, to: {adapter: {kind: events}}}]
YML
}
python3 - "$WORK" "$EVENT_KEY" <<'PY'
import json, sys
d, key = sys.argv[1], sys.argv[2]
ev = {"specversion": "1.0", "id": "bench-0", "source": "/enti/c_e783/anagrafe", "type": "it.varco.anagrafe.residenza.cambiata.v1",
      "subject": "RSSMRA80A01H501U", "data": {"codiceFiscale": "RSSMRA80A01H501U", "comuneProvenienza": "E783", "comuneDestinazione": "A662",
      "dataDecorrenza": "2026-11-20", "indirizzo": {"via": "Corso della Repubblica", "civico": "12", "cap": "62100"}}}
open(d + "/one.lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/cloudevents+json"\nwrk.headers["X-Api-Key"] = "%s"\n'
    'local template = %s\nlocal n = 0\nlocal salt = os.time() .. "-" .. math.floor(os.clock() * 1000000)\n'
    'request = function()\n  n = n + 1\n'
    '  local body = string.gsub(template, \'"id": "bench%%-\', \'"id": "r\' .. salt .. "-" .. n .. \'-\')\n'
    '  return wrk.format(nil, nil, nil, body)\nend\n' % (key, json.dumps(json.dumps(ev))))
PY

# A route for logged-in citizens (`access: {session: {}}`): one ente with `oidc`, the reference
# Trust Anchor and OP (tests/tools/spid_peer) with the ente registered. The ente's entity id
# names its port, so every varco+session run listens on the same one.
SPID_PY=${SPID_PY:-$HOME/.cache/varco/spid-venv/bin/python}
SESSION_PORT="" TA_PORT="" TA_JWKS=""
session_conf() { # $1 TA jwks (JSON)
    cat <<YML
server: {threads: 1, access_log: false}
listeners: [{name: public, address: "127.0.0.1:$SESSION_PORT"}]
admin: {address: "127.0.0.1:$(port)"}
federation:
  trust_anchors: [{entity_id: "http://127.0.0.1:$TA_PORT/", jwks: $1}]
  providers: [{entity_id: "http://127.0.0.1:$TA_PORT/oidc/op", name: "OP di riferimento", kind: spid}]
tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [127.0.0.1]
    oidc:
      entity_id: "http://127.0.0.1:$SESSION_PORT"
      authority_hints: ["http://127.0.0.1:$TA_PORT/"]
      federation_keys: [{kid: fed, private_key: {file: "$WORK/rp-fed.pem"}}]
      signing_keys: [{kid: sig, private_key: {file: "$WORK/rp-sig.pem"}}]
      encryption_keys: [{kid: enc, private_key: {file: "$WORK/rp-enc.pem"}}]
      contacts: [bench@example.it]
    upstreams: {backend: {servers: ["127.0.0.1:$BACKEND"]}}
    routes: [{name: session, path: "/{*rest}", methods: [GET], access: {session: {}}, to: {upstream: backend}}]
YML
}
session_setup() {
    [[ -x $SPID_PY ]] || return 1
    SESSION_PORT=$(port); TA_PORT=$(port)
    for k in fed sig enc; do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rp-$k.pem" 2>/dev/null; done
    # The ente's federation keys as varco publishes them, then the peer with the ente registered.
    session_conf '{"keys": [{"kty": "RSA", "kid": "placeholder", "n": "AQAB", "e": "AQAB"}]}' >"$WORK/s.yaml"
    "$VARCO" serve --config "$WORK/s.yaml" >/dev/null 2>&1 & local v=$!
    wait_up "http://127.0.0.1:$SESSION_PORT/.well-known/openid-federation"
    curl -s "http://127.0.0.1:$SESSION_PORT/.well-known/openid-federation" | python3 -c \
        'import sys, json, base64; p = sys.stdin.read().split(".")[1]; print(json.dumps(json.loads(base64.urlsafe_b64decode(p + "==="))["jwks"]))' >"$WORK/rp.jwks"
    kill -INT "$v"; wait "$v" 2>/dev/null || true
    "$SPID_PY" "$ROOT/tests/tools/spid_peer/peer.py" --port "$TA_PORT" --workdir "$WORK/peer" \
        --rp "http://127.0.0.1:$SESSION_PORT=$WORK/rp.jwks" >"$WORK/peer.out" 2>"$WORK/peer.err" & pids+=($!)
    for _ in $(seq 600); do grep -q '^ready ' "$WORK/peer.out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^ready ' "$WORK/peer.out" || { echo "the SPID peer did not start: $WORK/peer.err" >&2; return 1; }
    TA_JWKS=$(sed -n 's/^ready //p' "$WORK/peer.out" | python3 -c 'import sys, json; print(json.dumps(json.load(sys.stdin)["ta_jwks"]))')
}
# Logs a citizen in on the varco at SESSION_PORT; prints the session cookie.
session_login() {
    local info; info=$(sed -n 's/^ready //p' "$WORK/peer.out")
    "$SPID_PY" "$ROOT/tests/tools/spid_peer/citizen.py" --start "http://127.0.0.1:$SESSION_PORT/bench/item" \
        --op-name "OP di riferimento" \
        --username "$(python3 -c 'import sys, json; print(json.loads(sys.argv[1])["user"]["username"])' "$info")" \
        --password "$(python3 -c 'import sys, json; print(json.loads(sys.argv[1])["user"]["password"])' "$info")" |
        python3 -c 'import sys, json; print("varco_session=" + json.load(sys.stdin)["cookies"]["varco_session"])'
}

# pingap, the gateway on pingora users compare with: the same route, then with its JWT
# plugin or two rate limits (bench/pingap_conf.sh).
# shellcheck source=bench/pingap_conf.sh
source "$BENCH_DIR/pingap_conf.sh"
PINGAP_TOKEN=""
if [[ -n $PINGAP ]] && python3 -c 'import jwt' 2>/dev/null; then
    PINGAP_TOKEN=$(pingap_token)
fi

# measure NAME DURATION -> prints "Ir requests"
measure() {
    local name=$1 dur=$2 p out pid
    p=$(port); out="$WORK/$name-$dur.cg"
    case $name in
        varco) varco_conf "$p" false >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        varco+ratelimit) varco_conf "$p" false ", rate_limits: [{per: client_ip, requests: 1000000000, period: 1s}, {per: route, requests: 1000000000, period: 1s}]" >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        varco+jwt) jwt_conf "$p" >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        varco+trace100|varco+trace1)
            local ratio=1; [[ $name == varco+trace1 ]] && ratio=0.01
            varco_conf "$p" false "" ", tracing: {endpoint: \"http://127.0.0.1:$BACKEND/v1/traces\", sampler: traceidratio, ratio: $ratio, batch_delay: 200ms}" >"$WORK/v.yaml"
            valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        varco+log) varco_conf "$p" true >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        pingora-minimal+headers) valgrind -q --tool=callgrind --callgrind-out-file="$out" "$TARGET_DIR/release/pingora-minimal" --listen "127.0.0.1:$p" --backend "127.0.0.1:$BACKEND" --threads 1 --headers "${PM_ARGS[@]}" >/dev/null 2>&1 & ;;
        varco+session) p=$SESSION_PORT; session_conf "$TA_JWKS" >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        varco+events) events_conf "$p" >"$WORK/v.yaml"; valgrind -q --tool=callgrind --callgrind-out-file="$out" "$VARCO" serve --config "$WORK/v.yaml" >/dev/null 2>&1 & ;;
        pingap|pingap+jwt|pingap+ratelimit)
            local plugins=""
            [[ $name == pingap+jwt ]] && plugins='"jwt"'
            [[ $name == pingap+ratelimit ]] && plugins='"limit_ip", "limit_route"'
            pingap_toml "$WORK" "$p" "$BACKEND" "$plugins" >"$WORK/pingap-$p.toml"
            valgrind -q --tool=callgrind --callgrind-out-file="$out" "$PINGAP" -c "$WORK/pingap-$p.toml" >/dev/null 2>&1 & ;;
        pingora-minimal) valgrind -q --tool=callgrind --callgrind-out-file="$out" "$TARGET_DIR/release/pingora-minimal" --listen "127.0.0.1:$p" --backend "127.0.0.1:$BACKEND" --threads 1 "${PM_ARGS[@]}" >/dev/null 2>&1 & ;;
    esac
    pid=$!; pids+=($pid)
    local auth=() url="http://127.0.0.1:$p/bench/item" load=()
    [[ $name == varco+jwt ]] && auth=(-H "Authorization: Bearer $JWT_TOKEN")
    [[ $name == pingap+jwt ]] && auth=(-H "Authorization: Bearer $PINGAP_TOKEN")
    if [[ $name == varco+session ]]; then
        wait_up "http://127.0.0.1:$p/.well-known/openid-federation"
        auth=(-H "Cookie: $(session_login)")
        curl -sf -o /dev/null "${auth[@]}" "$url"
    elif [[ $name == varco+events ]]; then
        url="http://127.0.0.1:$p/events"; load=(-s "$WORK/one.lua")
        wait_up "http://127.0.0.1:$p/events" -X POST -H "X-Api-Key: $EVENT_KEY" -H 'Content-Type: application/cloudevents+json' \
            -d '{"specversion":"1.0","id":"up","source":"/enti/c_e783","type":"it.varco.pratica.stato.cambiato.v1","data":{"idPratica":"P-1","procedimento":"SUAP","stato":"chiusa","dataCambio":"2026-12-03T10:00:00Z"}}'
    else
        wait_up "$url" "${auth[@]}"
    fi
    local reqs
    reqs=$(wrk -t1 -c16 -d"$dur" "${auth[@]}" "${load[@]}" "$url" | awk '/requests in/ {print $1}')
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    local ir
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out"*)
    [[ -n ${BENCH_KEEP:-} ]] && { mkdir -p "$BENCH_KEEP"; cp "$out"* "$BENCH_KEEP/"; echo "$reqs" >"$BENCH_KEEP/$name-$dur.requests"; }
    echo "$ir $reqs"
}

printf '%-24s %12s %12s %16s\n' target "Ir/request" "vs minimal" "vs min+headers"
declare -A per
for name in ${INSTR_TARGETS:-pingora-minimal pingora-minimal+headers varco varco+log varco+ratelimit varco+jwt}; do
    [[ $name == varco+jwt && -z $JWT_TOKEN ]] && { echo "varco+jwt: skipped (pip install pyjwt cryptography)"; continue; }
    if [[ $name == varco+session && -z $TA_JWKS ]] && ! session_setup; then
        echo "varco+session: skipped (needs the SPID peer's venv at $SPID_PY: see .ci/run)"; continue
    fi
    if [[ $name == pingap* && -z $PINGAP_TOKEN ]]; then
        echo "$name: skipped (needs pingap on PATH or PINGAP=, and pip install pyjwt; see bench/README.md)"; continue
    fi
    read -r ir1 r1 < <(measure "$name" "$SHORT")
    read -r ir2 r2 < <(measure "$name" "$LONG")
    per[$name]=$(python3 -c "print(round(($ir2-$ir1)/($r2-$r1)))")
    ref=${per[pingora-minimal]:-${per[varco]:-${per[$name]}}}
    ref2=${per[pingora-minimal+headers]:-${per[$name]}}
    printf '%-24s %12s %12s %16s\n' "$name" "${per[$name]}" "$(python3 -c "print(f'{${per[$name]}/$ref:.3f}')")" "$(python3 -c "print(f'{${per[$name]}/$ref2:.3f}')")"
done
