#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for varco's tests, decoding with the OpenTelemetry project's own
protobuf definitions (PyPI opentelemetry-proto), independent of varco's exporter.

  otlp_receiver.py PORT
      serves until killed; prints "ready".

  POST /v1/traces        an ExportTraceServiceRequest (protobuf, or JSON; gzip when
                         Content-Encoding says so); answers per the current mode
  GET  /spans            {"spans": [...], "requests": N, "content_types": [...]}: every span
                         received, ids in lowercase hex (not MessageToDict's base64)
  POST /_control/mode    {"status": 503} or {"delay": 2.5}: how later exports are answered
"""
import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PORT = int(sys.argv[1])
LOCK = threading.Lock()
SPANS = []
STATE = {"requests": 0, "content_types": [], "status": 200, "delay": 0.0}
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def decode(req):
    out = []
    for rs in req.resource_spans:
        resource = {a.key: value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": KINDS.get(s.kind, str(s.kind)),
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {a.key: value(a.value) for a in s.attributes},
                    "status": {0: "unset", 1: "ok", 2: "error"}.get(s.status.code, "?"),
                    "status_message": s.status.message,
                    "scope": ss.scope.name,
                    "service": resource.get("service.name"),
                })
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/spans":
            with LOCK:
                body = {"spans": SPANS, "requests": STATE["requests"], "content_types": STATE["content_types"]}
            return self.send(200, json.dumps(body).encode())
        self.send(404, b"{}")

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/_control/mode":
            with LOCK:
                STATE.update(json.loads(raw))
            return self.send(204, b"")
        if self.path != "/v1/traces":
            return self.send(404, b"{}")
        if self.headers.get("content-encoding", "") == "gzip":
            raw = gzip.decompress(raw)
        ctype = self.headers.get("content-type", "")
        with LOCK:
            status, delay = STATE["status"], STATE["delay"]
            STATE["requests"] += 1
            STATE["content_types"].append(ctype)
        if delay:
            time.sleep(delay)
        if status != 200:
            return self.send(status, b"collector unavailable", "text/plain")
        req = ExportTraceServiceRequest()
        try:
            if ctype.startswith("application/json"):
                json_format.Parse(raw, req)
            else:
                req.ParseFromString(raw)
        except Exception as e:  # a malformed export is the exporter's bug: say so
            return self.send(400, str(e).encode(), "text/plain")
        with LOCK:
            SPANS.extend(decode(req))
        self.send(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
