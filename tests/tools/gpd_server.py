#!/usr/bin/env python3
"""A GPD stand-in for varco's tests that checks every request against pagoPA's own OpenAPI
(`gpd.json`): path and method of a known operation, the subscription key header, and the
body against the operation's request schema (jsonschema, with the document's $refs). It keeps
positions in memory and answers like GPD (201/200, 400/404/409 ProblemJson).

  gpd_server.py PORT SPEC KEY [CERT KEYFILE]
                                     serves until killed (HTTPS with CERT); prints "ready"
Control: POST /_control/fail?n=N   the next N requests answer 503
         GET /_control/log          every request seen, as JSON
"""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

PORT, SPEC, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = json.load(open(SPEC))
registry = Registry().with_resource("urn:gpd", Resource.from_contents(spec, default_specification=DRAFT7))
positions = {}
log = []
fail = [0]


def ops():
    for path, item in spec["paths"].items():
        rx = "^" + re.sub(r"\{[^}]+\}", "([^/]+)", path.rstrip("/")) + "$"
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                yield method.upper(), re.compile(rx), op


OPS = list(ops())


def problem(status, title, detail):
    return status, {"title": title, "status": status, "detail": detail}


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        path, _, query = self.path.partition("?")
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        if path == "/_control/fail":
            fail[0] = int(query.split("=")[1])
            return self.answer(200, {})
        if path == "/_control/log":
            return self.answer(200, log)
        entry = {"method": self.command, "path": path, "query": query, "key": self.headers.get("ocp-apim-subscription-key")}
        log.append(entry)
        if fail[0] > 0:
            fail[0] -= 1
            return self.answer(503, {"title": "Service Unavailable", "status": 503})
        match = next(((op, m) for (meth, rx, op) in OPS if meth == self.command for m in [rx.match(path)] if m), None)
        if match is None:
            entry["error"] = "no such operation in gpd.json"
            return self.answer(*problem(404, "Not Found", "no such operation"))
        op, m = match
        if self.headers.get("ocp-apim-subscription-key") != KEY:
            entry["error"] = "bad key"
            return self.answer(*problem(401, "Unauthorized", "subscription key"))
        body = None
        if "requestBody" in op:
            try:
                body = json.loads(raw)
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                schema = dict(schema)
                if "$ref" in schema:
                    schema = {"$ref": "urn:gpd" + schema["$ref"]}
                jsonschema.Draft7Validator(schema, registry=registry).validate(body)
            except Exception as e:  # noqa: BLE001 - any failure is the client's
                entry["error"] = "schema: " + str(e).splitlines()[0]
                return self.answer(*problem(400, "Bad Request", str(e).splitlines()[0]))
        org = m.group(1)
        iupd = m.group(2) if m.re.groups > 1 else None
        key = (org, iupd or (body or {}).get("iupd"))
        oid = op.get("operationId")
        if oid == "createPosition":
            if key in positions:
                return self.answer(*problem(409, "Conflict", "iupd exists"))
            body["status"] = "VALID" if "toPublish=true" in query else "DRAFT"
            positions[key] = body
            return self.answer(201, body)
        if key not in positions:
            return self.answer(*problem(404, "Not Found", "no position " + str(key[1])))
        p = positions[key]
        if oid == "getOrganizationDebtPositionByIUPD":
            return self.answer(200, p)
        if oid == "updatePosition":
            body["status"] = p["status"]
            positions[key] = body
            return self.answer(200, body)
        if oid == "deletePosition":
            del positions[key]
            return self.answer(200, {})
        if oid == "publishPosition":
            if p["status"] != "DRAFT":
                return self.answer(*problem(409, "Conflict", "already published"))
            p["status"] = "VALID"
            return self.answer(200, p)
        if oid == "invalidatePosition":
            p["status"] = "INVALID"
            return self.answer(200, p)
        return self.answer(*problem(404, "Not Found", oid))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
if len(sys.argv) > 5:
    import ssl

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
