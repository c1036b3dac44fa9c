#!/usr/bin/env python3
"""Helpers for bench/run.sh: free ports, the backend body, wrk parsing, the table and the JSON.

Subcommands (all output on stdout):
  ports N                      N distinct free TCP ports on 127.0.0.1, space separated
  body                         the backend's fixed 1 KiB JSON body (exactly 1024 bytes, no newline)
  record [options]             one result as a JSON line (see `record --help`)
  table RESULTS.jsonl RUN      the table and ratios of one run
  report RESULTS.jsonl OUT.json META.json
                               the ratio ranges across runs, and the JSON file
  meta KEY=VALUE...            a JSON object of the given strings (the run's metadata)

To add a row, call `bench_target NAME PID URL` in run.sh; to add a ratio, add a line to RATIOS.
"""

import argparse
import json
import re
import socket
import sys

# Rows in this order first (any other target follows in the order it was measured).
ORDER = ["direct", "nginx", "pingora-minimal", "pingora-minimal+headers", "varco", "varco+log", "varco+audit", "varco+ratelimit", "varco+bearer", "varco+jwt", "pingap", "pingap+ratelimit", "pingap+jwt"]

# (label, numerator target, denominator target, metric). A ratio whose targets are missing from
# a run is skipped, so runs that bench only a subset still print what they can.
RATIOS = [
    ("varco/pingora-minimal req/s", "varco", "pingora-minimal", "rps"),
    ("varco/pingora-minimal CPU µs/req", "varco", "pingora-minimal", "cpu_us_per_req"),
    ("varco/pingora-minimal+headers req/s", "varco", "pingora-minimal+headers", "rps"),
    ("varco/pingora-minimal+headers CPU µs/req", "varco", "pingora-minimal+headers", "cpu_us_per_req"),
    ("varco/nginx req/s", "varco", "nginx", "rps"),
    ("nginx/direct req/s", "nginx", "direct", "rps"),
    ("varco+log/varco req/s", "varco+log", "varco", "rps"),
    ("varco+audit/varco req/s", "varco+audit", "varco", "rps"),
    ("varco+audit/varco CPU µs/req", "varco+audit", "varco", "cpu_us_per_req"),
    ("varco+ratelimit/varco req/s", "varco+ratelimit", "varco", "rps"),
    ("varco+ratelimit/varco CPU µs/req", "varco+ratelimit", "varco", "cpu_us_per_req"),
    ("varco+jwt/varco req/s", "varco+jwt", "varco", "rps"),
    ("varco+jwt/varco CPU µs/req", "varco+jwt", "varco", "cpu_us_per_req"),
    ("varco+jwt/varco+bearer req/s", "varco+jwt", "varco+bearer", "rps"),
    ("varco+bearer/varco req/s", "varco+bearer", "varco", "rps"),
    ("varco/pingap req/s", "varco", "pingap", "rps"),
    ("varco/pingap CPU µs/req", "varco", "pingap", "cpu_us_per_req"),
    ("pingap/pingora-minimal req/s", "pingap", "pingora-minimal", "rps"),
    ("varco+ratelimit/pingap+ratelimit req/s", "varco+ratelimit", "pingap+ratelimit", "rps"),
    ("varco+jwt/pingap+jwt req/s", "varco+jwt", "pingap+jwt", "rps"),
]

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def cmd_ports(args):
    socks, ports = [], []
    try:
        for _ in range(args.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    print(" ".join(map(str, ports)))


def cmd_body(_args):
    head = {
        "ente": "c_e783",
        "servizio": "anagrafe",
        "esito": "ok",
        "items": [{"id": i, "codice": f"ANPR-{i:06d}", "stato": "attivo"} for i in range(8)],
    }
    text = json.dumps(head, separators=(",", ":"))
    # Pad to exactly 1024 bytes; only characters that are safe inside nginx '...' strings.
    pad_len = 1024 - len(text) - len(',"pad":""')
    if pad_len < 0:
        sys.exit("body skeleton is over 1 KiB")
    text = text[:-1] + ',"pad":"' + "x" * pad_len + '"}'
    assert len(text.encode()) == 1024 and "'" not in text and "$" not in text and "\\" not in text
    json.loads(text)
    sys.stdout.write(text)


def to_ms(value, unit):
    return float(value) * UNITS[unit]


def parse_wrk(text):
    """The numbers wrk --latency prints; raises ValueError if the output is not wrk's."""
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text, re.M)
    if not m:
        raise ValueError("no 'N requests in' line")
    out["requests"] = int(m.group(1))
    out["duration_s"] = to_ms(m.group(2), m.group(3)) / 1e3
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec' line")
    out["rps"] = float(m.group(1))
    lat = {}
    block = text.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, val, unit in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", block[1], re.M):
            lat[pct] = to_ms(val, unit)
    if "50" not in lat or "99" not in lat:
        raise ValueError("no latency distribution (was --latency passed?)")
    out["p50_ms"], out["p75_ms"], out["p90_ms"], out["p99_ms"] = (
        lat.get("50"), lat.get("75"), lat.get("90"), lat.get("99"))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    out["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = dict(zip(["connect", "read", "write", "timeout"], map(int, m.groups()))) if m else {}
    return out


def cmd_record(args):
    with open(args.wrk, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        w = parse_wrk(text)
    except ValueError as e:
        sys.exit(f"cannot parse wrk output of {args.name} ({e}):\n{text}")
    cpu_s = args.cpu_ticks / args.clk_tck
    rec = {
        "run": args.run,
        "target": args.name,
        "pids": [int(p) for p in args.pids.split(",") if p],
        "url": args.url,
        **w,
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / w["requests"] if w["requests"] else None,
        # Share of one core the measured processes used while wrk ran (100 = a full core).
        "cpu_busy_pct": 100.0 * cpu_s / w["duration_s"] if w["duration_s"] > 0 else None,
        "rss_idle_mib": args.rss_idle_kb / 1024,
        "rss_load_mib": args.rss_load_kb / 1024,
        "rss_samples": args.rss_samples,
    }
    if args.pinned == "1":
        # /proc/stat deltas of the two CPUs: "busy total" before, then after.
        pb0, pt0, pb1, pt1 = map(int, args.proxy_core.split())
        lb0, lt0, lb1, lt1 = map(int, args.load_core.split())
        proxy_busy = 100.0 * (pb1 - pb0) / max(pt1 - pt0, 1)
        # Time the proxy CPU spent on anything but the target (other processes, steal, the
        # kernel's loopback work outside the target's context): interference when high.
        other = proxy_busy - (100.0 * cpu_s / w["duration_s"] if rec["target"] != "direct" else 0.0)
        rec["proxy_core_busy_pct"] = proxy_busy
        rec["proxy_core_other_pct"] = max(other, 0.0)
        rec["load_core_busy_pct"] = 100.0 * (lb1 - lb0) / max(lt1 - lt0, 1)
    print(json.dumps(rec))


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ordered(rows):
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(rows, key=lambda r: (rank.get(r["target"], len(ORDER)), rows.index(r)))


def ratios_of(rows):
    by = {r["target"]: r for r in rows}
    out = {}
    for label, num, den, metric in RATIOS:
        if num in by and den in by and by[num].get(metric) and by[den].get(metric):
            out[label] = by[num][metric] / by[den][metric]
    return out


def fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def table(rows):
    head = ["target", "req/s", "p50", "p99", "CPU µs/req", "RSS idle MiB", "RSS load MiB", "busy %",
            "other %", "load %"]
    body = [[
        r["target"],
        fmt(r["rps"], ".0f"),
        fmt(r["p50_ms"], ".3f") + "ms",
        fmt(r["p99_ms"], ".3f") + "ms",
        fmt(r["cpu_us_per_req"], ".1f"),
        fmt(r["rss_idle_mib"], ".1f"),
        fmt(r["rss_load_mib"], ".1f"),
        fmt(r["cpu_busy_pct"], ".0f"),
        fmt(r.get("proxy_core_other_pct"), ".0f"),
        fmt(r.get("load_core_busy_pct"), ".0f"),
    ] for r in ordered(rows)]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = []
    for row in [head] + body:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def warnings(rows):
    out = []
    for r in ordered(rows):
        errs = {k: v for k, v in r.get("socket_errors", {}).items() if v}
        if r.get("non_2xx_3xx"):
            out.append(f"WARNING {r['target']}: {r['non_2xx_3xx']} non-2xx/3xx responses")
        if errs:
            out.append(f"WARNING {r['target']}: socket errors {errs}")
        if (r.get("proxy_core_other_pct") or 0) > 15:
            out.append(f"WARNING {r['target']}: {r['proxy_core_other_pct']:.0f} % of the proxy CPU went to "
                       "something else (another job on this machine?): this row is unreliable")
        if r.get("requests", 0) == 0:
            out.append(f"WARNING {r['target']}: no requests completed")
    return out


def print_run(rows, run):
    print(f"== run {run} ==")
    print(table(rows))
    for w in warnings(rows):
        print(w)
    rat = ratios_of(rows)
    if rat:
        width = max(map(len, rat))
        for label, v in rat.items():
            print(f"  {label.ljust(width)}  {v:.3f}")


def cmd_table(args):
    rows = [r for r in load(args.results) if r["run"] == args.run]
    print_run(rows, args.run)


def cmd_report(args):
    recs = load(args.results)
    with open(args.meta, encoding="utf-8") as f:
        meta = json.load(f)
    runs = sorted({r["run"] for r in recs})
    per_run = []
    for run in runs:
        rows = [r for r in recs if r["run"] == run]
        per_run.append({"run": run, "targets": ordered(rows), "ratios": ratios_of(rows)})
    summary = {}
    for label, *_ in RATIOS:
        vals = [p["ratios"][label] for p in per_run if label in p["ratios"]]
        if vals:
            summary[label] = {"min": min(vals), "max": max(vals), "values": vals}
    print(f"== ratios across {len(runs)} run(s): min–max (per run) ==")
    if summary:
        width = max(map(len, summary))
        for label, s in summary.items():
            each = ", ".join(f"{v:.3f}" for v in s["values"])
            print(f"  {label.ljust(width)}  {s['min']:.3f}–{s['max']:.3f}   ({each})")
    doc = {**meta, "runs": per_run, "ratio_ranges": summary}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"\nresults written to {args.out}")


def cmd_meta(args):
    out = {}
    for kv in args.pairs:
        k, _, v = kv.partition("=")
        out[k] = v
    print(json.dumps(out, indent=2, ensure_ascii=False))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s.set_defaults(fn=cmd_ports)
    sub.add_parser("body").set_defaults(fn=cmd_body)
    s = sub.add_parser("record")
    s.add_argument("--run", type=int, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--pids", required=True, help="comma-separated pids whose CPU/RSS were summed")
    s.add_argument("--url", required=True)
    s.add_argument("--wrk", required=True, help="file holding wrk's output")
    s.add_argument("--cpu-ticks", type=int, required=True, help="utime+stime delta over the run")
    s.add_argument("--clk-tck", type=int, required=True)
    s.add_argument("--rss-idle-kb", type=int, required=True)
    s.add_argument("--rss-load-kb", type=int, required=True, help="peak VmRSS sampled during the run")
    s.add_argument("--rss-samples", type=int, default=0)
    s.add_argument("--pinned", default="0")
    s.add_argument("--proxy-core", default="0 0 0 0", help="busy/total ticks of the proxy CPU before and after")
    s.add_argument("--load-core", default="0 0 0 0", help="busy/total ticks of the load CPU before and after")
    s.set_defaults(fn=cmd_record)
    s = sub.add_parser("table")
    s.add_argument("results")
    s.add_argument("run", type=int)
    s.set_defaults(fn=cmd_table)
    s = sub.add_parser("report")
    s.add_argument("results")
    s.add_argument("out")
    s.add_argument("meta")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("meta")
    s.add_argument("pairs", nargs="*")
    s.set_defaults(fn=cmd_meta)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
