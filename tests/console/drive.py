"""The operators' console in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium, against a running Warden, with the official Python SDK as the
MCP client whose calls the console's actions stop and release.

Usage: python drive.py CONSOLE_URL MCP_URL ADMIN_TOKEN SCREENSHOT_DIR DESCRIPTIONS_FILE
(run by `crates/warden/tests/gateway/console.rs`; Warden serves the fixture as upstream "fx":
`echo` allowed, `rows` held for an admin's approval; the fixture reads tool description
overrides from DESCRIPTIONS_FILE at every listing, which is how this script pulls the rug).
Exits non-zero on the first check that fails, saying which."""
import json
import os
import sys
import urllib.error
import urllib.request

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from browser import browser, check, click, shot as shot_in

CONSOLE, MCP, TOKEN, SHOTS, DESCRIPTIONS = sys.argv[1:6]


def shot(d, name):
    shot_in(d, SHOTS, name)


def text(result):
    return " ".join(c.text for c in result.content if getattr(c, "text", None))


async def mcp_tools():
    async with streamable_http_client(MCP) as (read, write, *_):
        async with ClientSession(read, write) as s:
            await s.initialize()
            return {t.name: t.description for t in (await s.list_tools()).tools}


async def mcp_call(tool, args):
    async with streamable_http_client(MCP) as (read, write, *_):
        async with ClientSession(read, write) as s:
            await s.initialize()
            return await s.call_tool(tool, args)


def call(tool, args):
    return anyio.run(mcp_call, tool, args)


def headers_and_body(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers, r.read().decode()


def main():
    # The page's security: a strict CSP, no framing, no inline script.
    h, html = headers_and_body(f"{CONSOLE}/console")
    csp = h.get("Content-Security-Policy", "")
    check("default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp,
          f"the console is served with a strict CSP ({csp})")
    d = browser()
    wait = WebDriverWait(d, 15)
    try:
        d.get(f"{CONSOLE}/console")
        scripts = d.find_elements(By.TAG_NAME, "script")
        check(scripts and all(s.get_attribute("src") for s in scripts), "the page has no inline script")
        wait.until(EC.visibility_of_element_located((By.ID, "page-sign-in")))
        shot(d, "sign-in")

        # A wrong token is refused; the right one signs in.
        d.find_element(By.ID, "token").send_keys("not-the-admin-token-but-long-enough-to-try")
        d.find_element(By.ID, "sign-in-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "error"), "not the admin token"))
        check(True, "a wrong admin token is refused")
        d.find_element(By.ID, "token").clear()
        d.find_element(By.ID, "token").send_keys(TOKEN)
        d.find_element(By.ID, "name").send_keys("ops-alice")
        d.find_element(By.ID, "sign-in-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "who"), "ops-alice"))
        cookies = {c["name"]: c for c in d.get_cookies()}
        c = cookies.get("warden_console")
        check(c and c["httpOnly"] and c.get("sameSite") == "Strict", f"the session cookie is HttpOnly, SameSite=Strict ({c})")

        # Overview: the upstream is there.
        check(call("echo", {"text": "before"}).is_error is not True, "the MCP client's echo works before the switch")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-upstream='fx']")))
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "tr[data-upstream='fx']"), "up"))
        layers = d.find_element(By.CSS_SELECTOR, "tr[data-upstream='fx'] td.layers").text
        check("namespaces=" in layers and "seccomp=" in layers, f"the overview shows the sandbox layers in force ({layers})")

        # Kill switch: switch echo off; the client's call is refused; switch it back on.
        d.get(f"{CONSOLE}/console#kill-switches")
        wait.until(EC.visibility_of_element_located((By.ID, "kill")))
        wait.until(lambda d: len(Select(d.find_element(By.ID, "kill-server")).options) > 0)
        Select(d.find_element(By.ID, "kill-server")).select_by_value("fx")
        d.find_element(By.ID, "kill-tool").send_keys("echo")
        d.find_element(By.ID, "kill-reason").send_keys("incident 42: echo leaks")
        d.find_element(By.ID, "kill-button").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-kill='fx/echo']")))
        shot(d, "kill-switches")
        try:
            r = call("echo", {"text": "during"})
            refused, detail = bool(r.is_error), text(r)
        except Exception as e:  # a JSON-RPC error
            refused, detail = True, str(e)
        check(refused, f"the MCP client's echo is refused while switched off ({detail})")
        click(d, "tr[data-kill='fx/echo'] button")
        wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, "tr[data-kill='fx/echo']")))
        check(call("echo", {"text": "after"}).is_error is not True, "echo works again after switching it on")

        # The cookie alone is worth nothing: a read without the CSRF token is not signed in, a
        # state change without it is refused; from the page itself.
        status = d.execute_async_script(
            "const done = arguments[0]; fetch('/admin/kill-switches').then(r => done(r.status));")
        check(status == 401, f"a read with the cookie but without the CSRF token is not signed in (got {status})")
        status = d.execute_async_script(
            "const done = arguments[0];"
            "fetch('/admin/kill-switches', {method: 'POST', credentials: 'same-origin',"
            " headers: {'content-type': 'application/json'},"
            " body: JSON.stringify({server: 'fx', reason: 'forged'})}).then(r => done(r.status));")
        check(status == 403, f"a state change without the CSRF token gets 403 (got {status})")

        # Approvals: a held call appears live; approving it completes the client's call.
        async def held_and_approved():
            result = {}

            async def client():
                result["r"] = await mcp_call("rows", {"value": {"rows": [{"to": "ops\u202eliame.evil", "note": "ok\U000E0041\U000E0042"}]}})

            async with anyio.create_task_group() as tg:
                tg.start_soon(client)
                await anyio.to_thread.run_sync(approve_in_browser, d, wait)
            return result["r"]

        r = anyio.run(held_and_approved)
        check(r.is_error is not True and "liame" in json.dumps(r.structured_content or {}),
              f"the approved call completes for the client ({r})")

        # A rug pull: echo's definition changes under Warden; it is withheld until the operator,
        # having seen the diff, approves the new definition.
        check(anyio.run(mcp_tools).get("echo") == "Echoes its text argument", "echo is listed as pinned")
        with open(DESCRIPTIONS) as f:
            overrides = json.load(f)
        with open(DESCRIPTIONS, "w") as f:
            json.dump({**overrides, "echo": "Echoes its text argument, now in version 2"}, f)
        check("echo" not in anyio.run(mcp_tools), "the changed echo is withheld from the client")
        d.get(f"{CONSOLE}/console#tools")
        card = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-change='fx/echo']")))
        added = [x.text for x in card.find_elements(By.CSS_SELECTOR, ".line.add")]
        removed = [x.text for x in card.find_elements(By.CSS_SELECTOR, ".line.del")]
        check(any("version 2" in a for a in added) and any("Echoes its text argument" in r for r in removed),
              f"the diff shows the old and new description ({removed} → {added})")
        shot(d, "tools")
        # Every definition is listed, with the rules naming it; the poisoned one's findings
        # are marked in its definition.
        row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-definition='fx/tool/echo']")))
        check("allow echo" in row.text, f"echo's row names the rule that allows it ({row.text})")
        click(d, "tr[data-definition='fx/tool/test_simple_text']")
        marks = [m.text for m in wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#definition pre mark.finding"))]
        check(any("~/.ssh" in m for m in marks), f"the poisoned description's matched text is marked ({marks})")
        check("No rule names it" in d.find_element(By.ID, "definition").text, "a tool no rule names says so")
        d.execute_script("document.getElementById('definition').scrollIntoView()")
        shot(d, "tools-definitions")
        d.execute_script("window.scrollTo(0, 0)")
        click(d, "[data-change='fx/echo'] button.approve-change")
        wait.until(EC.text_to_be_present_in_element((By.ID, "changes"), "No definition changed"))
        check(anyio.run(mcp_tools).get("echo") == "Echoes its text argument, now in version 2",
              "after approval the client sees the new definition")

        # Audit: the approved call is found by its tool; the export carries it too.
        d.get(f"{CONSOLE}/console#audit")
        # (the page searches once on arrival: let that finish before searching again)
        wait.until(EC.text_to_be_present_in_element((By.ID, "audit-summary"), "matched"))
        d.find_element(By.ID, "audit-tool").send_keys("rows")
        d.find_element(By.ID, "audit-kind").send_keys("call")
        d.find_element(By.ID, "audit-button").click()

        def open_the_call(d):
            for r in d.find_elements(By.CSS_SELECTOR, "#audit tr.record"):
                if "rows" in r.text and "allowed" in r.text:
                    r.click()
                    return r.text
            return False

        row = WebDriverWait(d, 15, ignored_exceptions=[StaleElementReferenceException]).until(open_the_call)
        check(True, f"the approved call is in the audit search ({row})")
        wait.until(EC.text_to_be_present_in_element((By.ID, "audit-record"), "console:ops-alice"))
        check(True, "the call's record names the approver")
        try:
            wait.until(EC.text_to_be_present_in_element((By.ID, "chain-status"), "The trail verifies"))
        except Exception:
            check(False, f"the trail verifies: {d.find_element(By.ID, 'chain').text}")
        check("signed checkpoint" in d.find_element(By.ID, "chain-details").text, "the audit page shows the chain's checkpoints")
        shot(d, "audit")
        exported = d.execute_async_script("const done = arguments[0]; exportAudit().then(done);")
        lines = [json.loads(x) for x in exported.splitlines() if x.strip()]
        check(lines and all(x.get("name") == "rows" for x in lines), f"the export holds the matching records ({len(lines)})")

        # The effective config, secrets as references, with warden check's findings.
        d.get(f"{CONSOLE}/console#config")
        wait.until(EC.text_to_be_present_in_element((By.ID, "check-lines"), "upstream(s))"))
        shown = d.find_element(By.ID, "config-json").text
        check('"token": {' in shown and TOKEN not in shown, "the config shows the admin token's reference, not the token")
        check(d.find_elements(By.CSS_SELECTOR, "#check-lines li.check-ok"), "warden check's findings are listed")
        shot(d, "config")

        # The overview's last hour: the calls made, and the one the kill switch refused.
        d.get(f"{CONSOLE}/console#overview")
        wait.until(EC.text_to_be_present_in_element((By.ID, "denial-reasons"), "kill switch"))
        drawn = d.find_element(By.CSS_SELECTOR, "#chart-calls path.series").get_attribute("d")
        check(drawn.count("L") + drawn.count("M") >= 2 and drawn != "M0,0", f"the calls chart is drawn ({drawn[-60:]})")
        check("session(s) open" in d.find_element(By.ID, "generation").text, "the overview counts the open sessions")
        shot(d, "overview")

        # Sign out: the session is gone from the store, not only from the browser.
        wait.until(EC.text_to_be_present_in_element((By.ID, "who"), "ops-alice"))
        old_cookie = d.get_cookie("warden_console")["value"]
        old_csrf = d.execute_script("return sessionStorage.getItem('warden-csrf')")

        def session_status():
            req = urllib.request.Request(f"{CONSOLE}/console/session", headers={
                "cookie": f"warden_console={old_cookie}", "x-warden-csrf": old_csrf})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        check(session_status() == 200, "the cookie with its CSRF token is a session")
        wait.until(EC.element_to_be_clickable((By.ID, "sign-out"))).click()
        wait.until(EC.visibility_of_element_located((By.ID, "page-sign-in")))
        check(session_status() == 401, "after signing out the same cookie and token are no session")
    finally:
        d.quit()
    print("console: all checks passed", flush=True)


def approve_in_browser(d, wait):
    d.get(f"{CONSOLE}/console#approvals")
    card = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#approvals .card")))
    marks = [m.text for m in card.find_elements(By.CSS_SELECTOR, ".mark")]
    check("⟦U+202E⟧" in marks, f"the right-to-left override in the arguments is shown as a mark ({marks})")
    check("⟦U+E0041⟧" in marks and "⟦U+E0042⟧" in marks, f"tag characters (ASCII smuggling) are shown as marks ({marks})")
    check("digest" in card.text, "the approval shows its digest")
    shot(d, "approvals")
    card.find_element(By.CSS_SELECTOR, "input.note").send_keys("checked with the requester")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "approvals"), "Nothing is waiting"))


if __name__ == "__main__":
    main()
