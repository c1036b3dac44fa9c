#!/usr/bin/env python3
"""Independent pagoPA node for varco's tests: a SOAP client built from the official WSDL
(zeep) and validation of every answer against the official XSD (xmlschema).

  call WSDL URL OPERATION KWARGS_JSON   calls the operation; prints {"result", "xml", "valid", "errors"}
  validate XSD FILE                     validates the Body's element of a SOAP envelope file;
                                        prints {"valid", "errors", "element"}
"""
import json
import sys
import xml.etree.ElementTree as ET

SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


def validate_envelope(xsd, text):
    import xmlschema
    schema = xmlschema.XMLSchema(xsd)
    root = ET.fromstring(text)
    body = root.find(SOAP + "Body")
    if body is None or len(body) != 1:
        return {"valid": False, "errors": ["no single Body element"], "element": None}
    el = body[0]
    errors = [str(e.reason or e) for e in schema.iter_errors(el)]
    return {"valid": not errors, "errors": errors, "element": el.tag.split("}")[-1]}


def call(wsdl, url, op, kwargs):
    import os
    import zeep
    from zeep.plugins import HistoryPlugin
    history = HistoryPlugin()
    client = zeep.Client(wsdl, plugins=[history])
    service = client.create_service("{http://pagopa-api.pagopa.gov.it/paForNode}paForNodeBinding", url)
    result = getattr(service, op)(**kwargs)
    raw = ET.tostring(history.last_received["envelope"], encoding="unicode")
    xsd = os.path.join(os.path.dirname(wsdl), "xsd", "paForNode.xsd")
    v = validate_envelope(xsd, raw)
    out = {"result": json.loads(json.dumps(zeep.helpers.serialize_object(result, dict), default=str)), "xml": raw}
    out.update(v)
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "call":
        print(json.dumps(call(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))))
    elif cmd == "validate":
        print(json.dumps(validate_envelope(sys.argv[2], open(sys.argv[3]).read())))
    else:
        sys.exit("unknown command " + cmd)
