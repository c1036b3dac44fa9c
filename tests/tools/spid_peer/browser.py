#!/usr/bin/env python3
"""A citizen in a real browser: headless Chromium (Debian's, through its chromedriver and
Selenium; nothing is downloaded) opens an ente's protected page on varco, picks the OP on
varco's chooser, logs in and consents at the reference OP (peer.py), and lands back on the
page. Prints one JSON object: the pages seen, the final page's text, varco's cookies as the
browser stored them, and (with --logout) where the protected page leads after logging out.

  browser.py --start URL --op-name NAME --username U --password P
             [--screenshots DIR] [--logout] [--deny]

--deny: the citizen refuses consent at the OP; the flow stops on varco's error page.
"""
import argparse
import json
import os
import sys
import tempfile
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def browser(profile):
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        o.add_argument(arg)
    # An Italian citizen's browser (headless Chromium ignores --lang for Accept-Language).
    o.add_experimental_option("prefs", {"intl.accept_languages": os.environ.get("BROWSER_LANG", "it-IT,it")})
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True)
    ap.add_argument("--op-name", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--screenshots")
    ap.add_argument("--logout", action="store_true")
    ap.add_argument("--deny", action="store_true")
    a = ap.parse_args()
    base = urlparse(a.start)
    out = {"pages": []}
    with tempfile.TemporaryDirectory(prefix="varco-chromium-") as profile:
        d = browser(profile)
        wait = WebDriverWait(d, 30)
        shot = lambda name: a.screenshots and d.save_screenshot(os.path.join(a.screenshots, name))
        try:
            d.get(a.start)
            # varco's chooser: open the SPID list, pick the OP.
            spid = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "details.spid summary")))
            out["pages"].append({"url": d.current_url, "title": d.title})
            spid.click()
            op = wait.until(ec.element_to_be_clickable((By.LINK_TEXT, a.op_name)))
            shot("login-chooser.png")
            op.click()
            # The OP: credentials, then consent.
            wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(a.username)
            d.find_element(By.NAME, "password").send_keys(a.password)
            out["pages"].append({"url": d.current_url, "title": d.title})
            d.find_element(By.ID, "submit").click()
            if a.deny:
                wait.until(ec.element_to_be_clickable((By.ID, "do_not_agree"))).click()
                wait.until(lambda d: urlparse(d.current_url).netloc == base.netloc)
                out["final_url"] = d.current_url
                out["final_text"] = d.find_element(By.TAG_NAME, "body").text
                return out
            wait.until(ec.element_to_be_clickable((By.ID, "agree"))).click()
            # Back on the ente's page, logged in.
            wait.until(lambda d: d.current_url.startswith(a.start))
            out["final_url"] = d.current_url
            out["final_text"] = d.find_element(By.TAG_NAME, "body").text
            shot("login-logged-in.png")
            out["cookies"] = [c for c in d.get_cookies() if c["name"].startswith("varco")]
            if a.logout:
                prefix = "/" + base.path.strip("/").split("/")[0]
                d.get(f"{base.scheme}://{base.netloc}{prefix}/oidc/logout")
                out["logout_page_title"] = d.title
                wait.until(ec.element_to_be_clickable((By.ID, "logout"))).click()
                wait.until(lambda d: "/oidc/logout" not in d.current_url)
                d.get(a.start)
                wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "details.spid summary")))
                out["after_logout_url"] = d.current_url
        finally:
            d.quit()
    return out


if __name__ == "__main__":
    try:
        print(json.dumps(main()))
    except Exception as e:  # the test prints it with the failed assertion
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
