#!/usr/bin/env python3
"""Publish -> webhook latency of varco's event bus, one event at a time.

Listens as the subscriber's webhook, posts one CloudEvent to varco, waits until the webhook
receives it, and repeats; prints "p50_ms p99_ms" of the publish-to-arrival times.

    bench/latency.py --hook PORT --url http://127.0.0.1:P/events --key KEY [--count 200]
"""
import argparse
import http.client
import http.server
import json
import threading
import time
import urllib.parse

arrived = {}
cond = threading.Condition()


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        now = time.perf_counter()
        try:
            eid = json.loads(body)["id"]
        except Exception:
            eid = None
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
        with cond:
            arrived[eid] = now
            cond.notify_all()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hook", type=int, required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--prefix", default="lat")
    ap.add_argument("--warmup", type=int, default=10, help="events sent first and not counted (consumer-group join)")
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.hook), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    lat = []
    for i in range(a.warmup + a.count):
        eid = "%s-%d" % (a.prefix, i)
        ev = {"specversion": "1.0", "id": eid, "source": "/enti/c_e783/anagrafe",
              "type": "it.varco.anagrafe.residenza.cambiata.v1", "subject": "RSSMRA80A01H501U",
              "data": {"codiceFiscale": "RSSMRA80A01H501U", "comuneProvenienza": "E783",
                       "comuneDestinazione": "A662", "dataDecorrenza": "2026-11-20"}}
        t0 = time.perf_counter()
        conn.request("POST", u.path, json.dumps(ev),
                     {"content-type": "application/cloudevents+json", "x-api-key": a.key})
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            raise SystemExit("publish answered %d" % r.status)
        with cond:
            if not cond.wait_for(lambda: eid in arrived, timeout=30):
                raise SystemExit("event %s never arrived" % eid)
            if i >= a.warmup:
                lat.append((arrived[eid] - t0) * 1000)
    lat.sort()
    print("%.2f %.2f" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))


if __name__ == "__main__":
    main()
