#!/usr/bin/env python3
"""A comune's SOAP back-office for varco's mediation tests, written with spyne (an independent
SOAP stack: it publishes its own WSDL, parses requests and writes answers and faults itself).

Service `Pratiche` (namespace urn:comune:pratiche), document/literal wrapped:
  getPratica(id)              -> Pratica (nested Richiedente, array of Documento, decimal, date)
                                 unknown id: fault Client.ResourceNotFound
  presentaIstanza(istanza)    -> Ricevuta (attachments as base64Binary, checked and counted)
  cercaPratiche(codiceFiscale, stato?) -> array of Pratica (possibly empty)
Service `Anagrafe` (urn:comune:anagrafe, SOAP 1.1 at /anagrafe):
  getCittadino(codiceFiscale) -> Cittadino (address, family as an array); unknown: a fault

  soap_backoffice.py PORT [--user U --password P]
      --user/--password: every request must carry this WS-Security UsernameToken
                         (PasswordText) or HTTP basic credentials, else a Client fault
  /soap11  SOAP 1.1 (WSDL at /soap11?wsdl)       /soap12  SOAP 1.2 (WSDL at /soap12?wsdl)
  GET  /_control/stats  {"calls": N, "last_headers": {...}, "last_body": "..."}
  POST /_control/set    JSON merged into the modes:
        {"delay": s}      sleep before answering
        {"broken": true}  answer getPratica with an element the WSDL does not have
        {"bomb": true}    answer with a DOCTYPE and nested entities (billion laughs)
        {"fail": N}       answer the next N requests with HTTP 503
"""
import base64
import datetime
import decimal
import json
import logging
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from socketserver import ThreadingMixIn

from lxml import etree
from spyne import (Application, Array, Boolean, ComplexModel, Date, DateTime, Decimal, Integer, Mandatory,
                   ResourceNotFoundError, Fault, ServiceBase, Unicode, ByteArray, rpc)
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

NS = "urn:comune:pratiche"
PORT = int(sys.argv[1])
USER = sys.argv[sys.argv.index("--user") + 1] if "--user" in sys.argv else None
PASSWORD = sys.argv[sys.argv.index("--password") + 1] if "--password" in sys.argv else None
LOCK = threading.Lock()
MODES = {"delay": 0, "broken": False, "bomb": False, "fail": 0}
STATS = {"calls": 0, "last_headers": {}, "last_body": ""}


class Richiedente(ComplexModel):
    __namespace__ = NS
    codiceFiscale = Mandatory(Unicode(pattern="[A-Z0-9]{16}"))
    nome = Mandatory(Unicode)
    cognome = Mandatory(Unicode)
    email = Unicode


class Documento(ComplexModel):
    __namespace__ = NS
    nome = Mandatory(Unicode)
    mime = Unicode
    pagine = Integer


class Pratica(ComplexModel):
    __namespace__ = NS
    id = Mandatory(Unicode)
    tipo = Mandatory(Unicode)
    stato = Unicode(values=["APERTA", "IN_ISTRUTTORIA", "CHIUSA"])
    richiedente = Richiedente
    documenti = Array(Documento)
    importo = Decimal
    dataApertura = Date
    urgente = Boolean


class Allegato(ComplexModel):
    __namespace__ = NS
    nome = Mandatory(Unicode)
    contenuto = Mandatory(ByteArray)


class Istanza(ComplexModel):
    __namespace__ = NS
    tipo = Mandatory(Unicode)
    richiedente = Mandatory(Richiedente)
    allegati = Array(Allegato)
    note = Unicode


class Ricevuta(ComplexModel):
    __namespace__ = NS
    numeroProtocollo = Mandatory(Integer)
    data = Mandatory(DateTime)
    allegatiRicevuti = Integer
    byteRicevuti = Integer


ROSSI = Richiedente(codiceFiscale="RSSMRA80A01H501U", nome="Mario", cognome="Rossi", email="mario.rossi@example.it")
BIANCHI = Richiedente(codiceFiscale="BNCLCU85M41F205Z", nome="Lucia", cognome="Bianchi")
PRATICHE = {
    "P-2026-0001": Pratica(id="P-2026-0001", tipo="SUAP", stato="IN_ISTRUTTORIA", richiedente=ROSSI,
                           documenti=[Documento(nome="planimetria.pdf", mime="application/pdf", pagine=3),
                                      Documento(nome="visura.pdf", mime="application/pdf", pagine=1)],
                           importo=decimal.Decimal("152.50"), dataApertura=datetime.date(2026, 11, 2), urgente=True),
    "P-2026-0002": Pratica(id="P-2026-0002", tipo="TARI", stato="APERTA", richiedente=BIANCHI,
                           documenti=[], importo=decimal.Decimal("0.00"), dataApertura=datetime.date(2026, 11, 20), urgente=False),
}
PROTOCOLLO = [41000]


class Pratiche(ServiceBase):
    @rpc(Mandatory(Unicode), _returns=Pratica, _body_style="wrapped")
    def getPratica(ctx, id):
        p = PRATICHE.get(id)
        if p is None:
            raise ResourceNotFoundError("pratica " + id)
        return p

    @rpc(Mandatory(Istanza), _returns=Ricevuta)
    def presentaIstanza(ctx, istanza):
        n = 0
        size = 0
        for a in istanza.allegati or []:
            n += 1
            size += sum(len(chunk) for chunk in a.contenuto)
        with LOCK:
            PROTOCOLLO[0] += 1
            num = PROTOCOLLO[0]
        return Ricevuta(numeroProtocollo=num, data=datetime.datetime(2026, 12, 3, 10, 0, 0, tzinfo=datetime.timezone.utc), allegatiRicevuti=n, byteRicevuti=size)

    @rpc(Mandatory(Unicode), Unicode, _returns=Array(Pratica))
    def cercaPratiche(ctx, codiceFiscale, stato):
        return [p for p in PRATICHE.values()
                if p.richiedente.codiceFiscale == codiceFiscale and (stato is None or p.stato == stato)]


AN = "urn:comune:anagrafe"


class Indirizzo(ComplexModel):
    __namespace__ = AN
    via = Mandatory(Unicode)
    civico = Unicode
    cap = Unicode(pattern="[0-9]{5}")
    comune = Mandatory(Unicode)
    provincia = Unicode(pattern="[A-Z]{2}")


class Componente(ComplexModel):
    __namespace__ = AN
    codiceFiscale = Mandatory(Unicode)
    nome = Unicode
    cognome = Unicode
    relazione = Unicode(values=["INTESTATARIO", "CONIUGE", "FIGLIO", "ALTRO"])


class Cittadino(ComplexModel):
    __namespace__ = AN
    codiceFiscale = Mandatory(Unicode)
    cognome = Mandatory(Unicode)
    nome = Mandatory(Unicode)
    dataNascita = Date
    sesso = Unicode(values=["M", "F"])
    indirizzo = Indirizzo
    famiglia = Array(Componente)


CITTADINI = {
    "RSSMRA80A01H501U": Cittadino(
        codiceFiscale="RSSMRA80A01H501U", cognome="Rossi", nome="Mario", dataNascita=datetime.date(1980, 1, 1), sesso="M",
        indirizzo=Indirizzo(via="Via Sparano", civico="12", cap="70121", comune="Bari", provincia="BA"),
        famiglia=[Componente(codiceFiscale="RSSMRA80A01H501U", nome="Mario", cognome="Rossi", relazione="INTESTATARIO"),
                  Componente(codiceFiscale="VRDLRA82B42A662K", nome="Laura", cognome="Verdi", relazione="CONIUGE")]),
}


class Anagrafe(ServiceBase):
    @rpc(Mandatory(Unicode(pattern="[A-Z0-9]{16}")), _returns=Cittadino)
    def getCittadino(ctx, codiceFiscale):
        c = CITTADINI.get(codiceFiscale)
        if c is None:
            raise ResourceNotFoundError("cittadino " + codiceFiscale)
        return c


def credentials_ok(environ, body):
    if USER is None:
        return True
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth.startswith("Basic "):
        try:
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
        except Exception:
            return False
        if (u, p) == (USER, PASSWORD):
            return True
    try:
        doc = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return False
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    for tok in doc.iter("{%s}UsernameToken" % wsse):
        u = tok.findtext("{%s}Username" % wsse)
        p = tok.find("{%s}Password" % wsse)
        if p is not None and p.get("Type", "").endswith("#PasswordText") and (u, p.text) == (USER, PASSWORD):
            return True
    return False


def make_app(protocol, service=None, tns=NS, name="PraticheService"):
    app = Application([service or Pratiche], tns=tns, name=name, in_protocol=protocol(validator="lxml"),
                      out_protocol=protocol())
    return WsgiApplication(app)


APPS = {"/soap11": make_app(Soap11), "/soap12": make_app(Soap12),
        "/anagrafe": make_app(Soap11, Anagrafe, AN, "AnagrafeService")}
BROKEN = b"""<?xml version='1.0' encoding='UTF-8'?>
<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="urn:comune:pratiche"><soap11env:Body><tns:getPraticaResponse><tns:getPraticaResult><tns:id>P-2026-0001</tns:id><tns:tipo>SUAP</tns:tipo><tns:segreto>x</tns:segreto></tns:getPraticaResult></tns:getPraticaResponse></soap11env:Body></soap11env:Envelope>"""
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body><tns:getPraticaResponse xmlns:tns="urn:comune:pratiche"><tns:getPraticaResult><tns:id>&lol3;</tns:id></tns:getPraticaResult></tns:getPraticaResponse></soap11env:Body></soap11env:Envelope>"""


def json_answer(start, status, obj):
    body = json.dumps(obj).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def root(environ, start):
    path = environ.get("PATH_INFO", "")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if path == "/_control/stats":
        with LOCK:
            return json_answer(start, "200 OK", STATS)
    if path == "/_control/set":
        with LOCK:
            MODES.update(json.loads(body or b"{}"))
        return json_answer(start, "200 OK", MODES)
    app = APPS.get(path)
    if app is None:
        return json_answer(start, "404 Not Found", {"error": "no such path"})
    if environ["REQUEST_METHOD"] == "POST":
        with LOCK:
            STATS["calls"] += 1
            STATS["last_headers"] = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            STATS["last_headers"]["content-type"] = environ.get("CONTENT_TYPE", "")
            STATS["last_body"] = body.decode("utf-8", "replace")
            delay, broken, bomb = MODES["delay"], MODES["broken"], MODES["bomb"]
            fail = MODES["fail"] > 0
            if fail:
                MODES["fail"] -= 1
        if delay:
            time.sleep(delay)
        if fail:
            return json_answer(start, "503 Service Unavailable", {"error": "down"})
        if not credentials_ok(environ, body):
            fault = (b"<?xml version='1.0'?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                     b"<s:Body><s:Fault><faultcode>s:Client.Authentication</faultcode>"
                     b"<faultstring>credenziali mancanti o errate</faultstring></s:Fault></s:Body></s:Envelope>")
            start("500 Internal Server Error", [("Content-Type", "text/xml; charset=utf-8")])
            return [fault]
        if (broken or bomb) and b"getPratica" in body:
            start("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
            return [BOMB if bomb else BROKEN]
    environ["wsgi.input"] = __import__("io").BytesIO(body)
    return app(environ, start)


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    # Faults are answers here, not incidents: spyne's tracebacks would only be noise.
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    httpd = make_server("127.0.0.1", PORT, root, server_class=Server, handler_class=Quiet)
    print("ready", flush=True)
    httpd.serve_forever()
