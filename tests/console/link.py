"""Linking an account at an upstream in a real browser (issue 27, `[upstream.oauth] mode =
"user"`): the MCP client's call answers with the link (-32042); Chromium opens Warden's page,
confirms (a real form POST: its Origin and the page's Referrer-Policy are the browser's own),
signs in at the Warden user's issuer (the test IdP's form), is sent on to the upstream's
authorization server (the same IdP's form), and comes back to Warden's callback with the
cookie the confirmation set; the call then goes through as the user.

Usage: python link.py MCP_URL BEARER USER SCREENSHOT_DIR
(run by `crates/warden/tests/gateway/user_links.rs`)."""
import json
import sys
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import browser, check, shot

MCP, BEARER, USER, SHOTS = sys.argv[1:5]


def call(session, body):
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "authorization": f"Bearer {BEARER}"}
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(MCP, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
        sid = r.headers.get("mcp-session-id") or session
    if text.startswith("{"):
        return sid, json.loads(text)
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return sid, (json.loads(data[-1]) if data else None)


def sign_in_at_idp(d, wait, what):
    wait.until(EC.presence_of_element_located((By.ID, "user")))
    check(d.current_url.split("/")[2] != MCP.split("/")[2], f"{what}: the browser is at the IdP")
    d.find_element(By.ID, "user").send_keys(USER)
    d.find_element(By.ID, "sign-in").click()


def main():
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "link.py", "version": "1"}}
    sid, _ = call(None, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    call(sid, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    echo = {"name": "echo", "arguments": {"text": f"as {USER}"}}
    _, first = call(sid, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": echo})
    check(first["error"]["code"] == -32042, f"the call answers with the link ({first})")
    link = first["error"]["data"]["elicitations"][0]["url"]
    d = browser()
    wait = WebDriverWait(d, 15)
    try:
        d.get(link)
        wait.until(EC.presence_of_element_located((By.TAG_NAME, "button")))
        check(USER in d.find_element(By.TAG_NAME, "body").text, "the page names the Warden user")
        shot(d, SHOTS, "link-page")
        d.find_element(By.TAG_NAME, "button").click()
        sign_in_at_idp(d, wait, "the sign-in at the Warden user's issuer")
        sign_in_at_idp(d, wait, "the upstream's authorization server")
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Account linked"))
        check(d.current_url.startswith(MCP.rsplit("/mcp", 1)[0]), "back at Warden's callback")
        shot(d, SHOTS, "link-done")
    finally:
        d.quit()
    _, second = call(sid, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": echo})
    text = second.get("result", {}).get("content", [{}])[0].get("text")
    check(text == f"as {USER}", f"the call goes through once linked ({second})")
    print("link: all checks passed", flush=True)


if __name__ == "__main__":
    main()
