#!/usr/bin/env python3
"""SPID/CIE OIDC Federation test peer: Trust Anchor + OpenID Provider in one
Django process (spid-cie-oidc reference implementation) on 127.0.0.1.

usage: peer.py --port PORT --workdir DIR --rp ENTITY_ID=JWKS_FILE [--rp ...]

Prints one line `ready {json}` on stdout when serving; runs until SIGTERM,
SIGINT or EOF on stdin (when stdin is a pipe). Logs go to stderr.
"""
import argparse
import json
import os
import signal
import stat
import sys
import threading
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--rp", action="append", default=[], metavar="ENTITY_ID=JWKS_FILE")
    args = p.parse_args()
    rps = []
    for spec in args.rp:
        sub, sep, path = spec.partition("=")
        if not sep:
            p.error(f"--rp needs ENTITY_ID=JWKS_FILE, got {spec!r}")
        with open(path) as f:
            rps.append((sub, json.load(f)["keys"]))
    return args, rps


def main():
    args, rps = parse_args()
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    db = os.path.join(workdir, "peer.sqlite3")
    if os.path.exists(db):
        os.remove(db)  # fresh DB per run: trust chains are cached in it

    os.environ.update(SPID_PEER_PORT=str(args.port), SPID_PEER_WORKDIR=workdir,
                      DJANGO_SETTINGS_MODULE="settings")
    sys.path.insert(0, HERE)
    import django
    django.setup()
    from django.core.management import call_command
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from bootstrap import bootstrap

    # Tables straight from the models (settings disable migrations): fast.
    call_command("migrate", run_syncdb=True, verbosity=0)
    info = bootstrap(rps)

    # Threaded: the OP calls its own TA over HTTP while serving a request.
    httpd = ThreadedWSGIServer(("127.0.0.1", args.port), WSGIRequestHandler)
    httpd.set_app(StaticFilesHandler(get_wsgi_application()))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    # Wait until the TA answers, then announce.
    with urllib.request.urlopen(f"{info['ta']}.well-known/openid-federation", timeout=10) as r:
        r.read()
    print("ready " + json.dumps(info), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if stat.S_ISFIFO(os.fstat(0).st_mode):  # EOF on a piped stdin stops us
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.wait(1):
        pass
    httpd.shutdown()
    httpd.server_close()


if __name__ == "__main__":
    main()
