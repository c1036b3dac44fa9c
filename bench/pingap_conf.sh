# The pingap rows' configuration, shared by run.sh and instructions.sh (sourced).
# pingap (github.com/vicanso/pingap 0.13.1) is the gateway on pingora users compare varco with.

PINGAP_SECRET=bench-secret-0123456789abcdef0123

# pingap_toml DIR PORT BACKEND_PORT PLUGINS: one location `/` → the backend, 1 thread, no
# access log; PLUGINS is the inside of the location's TOML plugin list: "jwt" (HS256, the only
# kind it verifies: no RS256, JWKS, issuer, audience or scope) and/or "limit_ip",
# "limit_route" (rate limits per client address and per Host, never exceeded).
pingap_toml() {
    cat <<TOML
[basic]
name = "bench"
pid_file = "$1/pingap-$2.pid"
upgrade_sock = "$1/pingap-$2.sock"
log_level = "ERROR"
threads = 1
work_stealing = false
[upstreams.backend]
addrs = ["127.0.0.1:$3"]
[locations.all]
path = "/"
upstream = "backend"
plugins = [$4]
[servers.bench]
addr = "127.0.0.1:$2"
locations = ["all"]
threads = 1
[plugins.jwt]
category = "jwt"
secret = "$PINGAP_SECRET"
header = "Authorization"
algorithm = "HS256"
[plugins.limit_ip]
category = "limit"
type = "rate"
tag = "ip"
max = 1000000000
interval = "1s"
[plugins.limit_route]
category = "limit"
type = "rate"
tag = "header"
key = "host"
max = 1000000000
interval = "1s"
TOML
}

# pingap_token: a valid HS256 token for the jwt plugin (PyJWT).
pingap_token() {
    python3 -c 'import jwt, sys, time; print(jwt.encode({"iss": "https://login.bench", "aud": "varco-bench", "sub": "citizen", "scope": "bench", "exp": int(time.time()) + 3600}, sys.argv[1], algorithm="HS256"))' "$PINGAP_SECRET"
}
