#!/usr/bin/env python3
"""A gRPC back-office and client (PyPI grpcio) for varco's HTTP/2 upstream tests. Messages are
raw bytes (no protobuf schema needed: the proxy never looks inside).

  grpc_tool.py serve PORT                 prints "ready"; /anagrafe.Anagrafe/Residenza answers
                                          b"residenza:" + request + the X-Forwarded-For
                                          metadata; /anagrafe.Anagrafe/Missing fails NOT_FOUND
  grpc_tool.py call TARGET METHOD AUTHORITY TEXT
                                          one unary call over h2c; prints
                                          {"code", "details", "response"}
"""
import json
import sys
from concurrent import futures

import grpc


def serve(port):
    def residenza(request, context):
        meta = dict(context.invocation_metadata())
        return b"residenza:" + request + b"|forwarded-for=" + meta.get("x-forwarded-for", "").encode()

    def missing(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "nessun cittadino con questo codice fiscale")

    handler = grpc.method_handlers_generic_handler(
        "anagrafe.Anagrafe",
        {
            "Residenza": grpc.unary_unary_rpc_method_handler(residenza),
            "Missing": grpc.unary_unary_rpc_method_handler(missing),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, method, authority, text):
    with grpc.insecure_channel(target, options=[("grpc.default_authority", authority)]) as ch:
        stub = ch.unary_unary(method)
        try:
            resp = stub(text.encode(), timeout=10)
            out = {"code": "OK", "details": None, "response": resp.decode()}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details(), "response": None}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "call":
        call(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit("unknown command " + sys.argv[1])
