# Helpers the single-scenario benchmarks share (pagopa.sh, pdnd.sh, siuss.sh); sourced after
# `die` and CONNECTIONS / DURATION are defined.

# A free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until URL answers at all (any status), for 30 s.
wait_up() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; die "not up: $1"; }

# run_wrk URL [wrk options...]: a 2 s warm-up, then DURATION with CONNECTIONS on one thread;
# prints "req/s p50_ms p99_ms requests". Any non-2xx answer fails the run.
run_wrk() {
    local url=$1
    shift
    wrk -t1 -c"$CONNECTIONS" "$@" -d2s "$url" >/dev/null
    wrk -t1 -c"$CONNECTIONS" "$@" -d"$DURATION" --latency "$url" | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
if re.search(r"Non-2xx", t): sys.exit("non-2xx answers")
print(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)), ms("50%"), ms("99%"), re.search(r"(\d+) requests in", t).group(1))'
}
