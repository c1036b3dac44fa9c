#!/usr/bin/env python3
"""A citizen's browser, scripted with `requests`, logging in to an ente through varco and the
reference OP (peer.py). Follows every redirect by hand so that varco's cookies (Secure, which
Python's cookie jar never sends over http) are kept apart and sent as a browser on loopback
would. Prints one JSON object: each step's status and location, the chooser page, the callback
URL, varco's cookies, and the protected page's final answer.

  citizen.py --start URL --op-name NAME --username U --password P [--drop-login-cookie]

--drop-login-cookie: the callback is visited without the cookie the login set, as another
browser holding a stolen callback URL would; the flow stops there.
"""
import argparse
import html
import json
import re
import sys
from urllib.parse import urljoin, urlparse

import requests

HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*>', re.I)
ATTR = re.compile(r'(name|value)="([^"]*)"')


def hidden_inputs(page):
    out = {}
    for tag in HIDDEN.findall(page):
        attrs = dict(ATTR.findall(tag))
        if "name" in attrs:
            out[attrs["name"]] = html.unescape(attrs.get("value", ""))
    return out


class Browser:
    def __init__(self, varco_origin):
        self.origin = varco_origin
        self.op = requests.Session()  # the OP's own cookies
        self.jar = {}  # varco's cookies, by name
        self.steps = []

    def varco(self, method, url, **kw):
        headers = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "it-IT,it;q=0.9"}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        r = requests.request(method, url, headers=headers, allow_redirects=False, timeout=30, **kw)
        for raw in r.raw.headers.getlist("Set-Cookie"):
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            attrs = rest.lower()
            if "max-age=0" in attrs:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
            self.steps.append({"set_cookie": raw})
        self.steps.append({"url": url, "status": r.status_code, "location": r.headers.get("Location")})
        return r

    def is_varco(self, url):
        u, o = urlparse(url), urlparse(self.origin)
        return (u.hostname, u.port) == (o.hostname, o.port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True)
    ap.add_argument("--op-name", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--drop-login-cookie", action="store_true")
    a = ap.parse_args()
    o = urlparse(a.start)
    b = Browser(f"{o.scheme}://{o.netloc}")
    out = {"steps": b.steps}

    r = b.varco("GET", a.start)
    assert r.status_code == 302, f"protected page: {r.status_code} {r.text[:300]}"
    chooser_url = urljoin(a.start, r.headers["Location"])
    r = b.varco("GET", chooser_url)
    assert r.status_code == 200, f"chooser: {r.status_code} {r.text[:300]}"
    out["chooser"] = r.text
    links = {html.unescape(n).strip(): html.unescape(h) for h, n in re.findall(r'<a href="([^"]*)">([^<]*)</a>', r.text)}
    assert a.op_name in links, f"no button for {a.op_name}: {list(links)}"
    r = b.varco("GET", urljoin(chooser_url, links[a.op_name]))
    assert r.status_code == 302, f"login start: {r.status_code} {r.text[:300]}"
    authz = r.headers["Location"]
    out["authorization_request"] = authz

    # At the OP: credentials, then consent.
    r = b.op.get(authz, allow_redirects=False, timeout=30)
    assert r.status_code == 200, f"OP login page: {r.status_code} {r.headers.get('Location')} {r.text[:300]}"
    form = hidden_inputs(r.text)
    form.update({"username": a.username, "password": a.password})
    r = b.op.post(authz, data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 302, f"OP login POST: {r.status_code} {r.text[:500]}"
    consent = urljoin(authz, r.headers["Location"])
    r = b.op.get(consent, allow_redirects=False, timeout=30)
    assert r.status_code == 200, f"OP consent page: {r.status_code}"
    form = hidden_inputs(r.text)
    form["agree"] = "True"
    r = b.op.post(consent, data=form, allow_redirects=False, timeout=30)
    callback = r.headers.get("Location", "")
    assert r.status_code == 302 and b.is_varco(callback), f"OP consent POST: {r.status_code} {callback}"
    out["callback"] = callback

    if a.drop_login_cookie:
        b.jar = {}
    r = b.varco("GET", callback)
    out["callback_status"] = r.status_code
    out["callback_body"] = r.text
    if r.status_code == 302:
        back = urljoin(callback, r.headers["Location"])
        out["returned_to"] = back
        r = b.varco("GET", back)
        out["final_status"] = r.status_code
        out["final_body"] = r.text
    out["cookies"] = b.jar
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
