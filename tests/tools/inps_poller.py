#!/usr/bin/env python3
"""INPS's side of the SIUSS "Welfare as a Service" contract (api-comuni.yaml 2.0.1), written
from the contract for varco's tests: one polling cycle per run, as INPS's scheduler would.

  inps_poller.py poll BASE_URL HOST VOUCHER STATE_FILE [--limit N] [--refuse ID_FLUSSO ...]

From the `since` kept in STATE_FILE (0 at first), it reads `GET /flussi?since=&limit=` until
an empty answer; checks each entry against the contract's `Flusso` schema, decodes `flusso`
and validates it with xmlschema against the official XSD of its `tipo`; then posts
`/esiti` (OK with an `id_acquisizione_siuss`; RICHIESTA_INVALIDA for a flow that is invalid
or named by --refuse), retrying a non-2xx answer. It records every id seen and fails if a flow
comes twice or `ts_flusso` goes backwards. Prints a JSON report:
  {"flows": [{"id_flusso", "tipo", "valid", "errors", "beneficiario"}], "since": MS, "esiti": STATUS}
"""
import base64
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request

import jsonschema
import xmlschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contracts", "external", "inps-siuss")
CONTRACT = yaml.safe_load(open(os.path.join(ROOT, "api-comuni.yaml")))
REGISTRY = Registry().with_resource("urn:waas", Resource.from_contents(CONTRACT, default_specification=DRAFT4))
FLUSSO = jsonschema.Draft4Validator({"$ref": "urn:waas#/components/schemas/Flusso"}, registry=REGISTRY)
XSD = {
    "PS_PSA_SINA": xmlschema.XMLSchema(os.path.join(ROOT, "PS_PSA_SINA201812.xsd")),
    "SINBA": xmlschema.XMLSchema(os.path.join(ROOT, "SINBA.xsd")),
}


def call(method, url, host, voucher, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Host", host)
    req.add_header("Authorization", "Bearer " + voucher)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ms(ts):
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def poll(base, host, voucher, state_file, limit, refuse):
    state = json.load(open(state_file)) if os.path.exists(state_file) else {"since": 0, "seen": []}
    report = []
    while True:
        status, body = call("GET", f"{base}/flussi?since={state['since']}&limit={limit}", host, voucher)
        if status != 200:
            sys.exit(f"GET /flussi answered {status}: {body[:300]!r}")
        page = json.loads(body)["elenco_flussi"]
        if not page:
            break
        for entry in page:
            errors = [e.message for e in FLUSSO.iter_errors(entry)]
            if errors:
                sys.exit(f"an entry breaks the contract's Flusso: {errors}")
            if entry["id_flusso"] in state["seen"]:
                sys.exit(f"{entry['id_flusso']} came twice")
            t = ms(entry["ts_flusso"])
            if t <= state["since"]:
                sys.exit(f"{entry['id_flusso']}: ts_flusso {t} is not after since {state['since']}")
            xml = base64.b64decode(entry["flusso"])
            try:
                doc = XSD[entry["tipo"]].to_dict(xml.decode())
                valid, why = True, []
            except Exception as e:  # noqa: BLE001 - any validation failure is the finding
                doc, valid, why = None, False, [str(e).splitlines()[0]]
            name = doc["IdentificazioneFlusso"]["@Nome"] if doc else None
            if valid and name != entry["id_flusso"]:
                sys.exit(f"the flow's IdentificazioneFlusso/@Nome {name} is not its id_flusso {entry['id_flusso']}")
            ben = (doc or {}).get("Beneficiario", [{}])
            ben = ben[0] if isinstance(ben, list) else ben
            report.append({"id_flusso": entry["id_flusso"], "tipo": entry["tipo"], "ts": t, "valid": valid,
                           "errors": why, "beneficiario": ben.get("@CodiceFiscale"),
                           "codice_ente": entry["codice_ente"]})
            state["seen"].append(entry["id_flusso"])
            state["since"] = t
        if len(page) < limit:
            break
    now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    esiti = []
    for f in report:
        ok = f["valid"] and f["id_flusso"] not in refuse
        e = {"id_flusso": f["id_flusso"], "tipo": f["tipo"],
             "ts_flusso": datetime.datetime.fromtimestamp(f["ts"] / 1000, datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
             "ts_acquisizione": now, "codice_esito": "OK" if ok else "RICHIESTA_INVALIDA"}
        if ok:
            e["id_acquisizione_siuss"] = str(abs(hash(f["id_flusso"])) % 100000)
        else:
            e["descrizione_esito"] = "In cooperazione è possibile inviare solo un beneficiario e una prestazione sociale"
        esiti.append(e)
    status = None
    if esiti:
        for attempt in range(5):
            status, body = call("POST", f"{base}/esiti", host, voucher, {"elenco_esiti": esiti})
            if 200 <= status < 300:
                break
            time.sleep(0.2 * (attempt + 1))
    json.dump(state, open(state_file, "w"))
    print(json.dumps({"flows": report, "since": state["since"], "esiti": status}))


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "poll":
        sys.exit(__doc__)
    limit = 10
    refuse = []
    rest = args[5:]
    while rest:
        if rest[0] == "--limit":
            limit, rest = int(rest[1]), rest[2:]
        elif rest[0] == "--refuse":
            refuse.append(rest[1])
            rest = rest[2:]
        else:
            sys.exit(f"unknown option {rest[0]}")
    poll(args[1], args[2], args[3], args[4], limit, refuse)
