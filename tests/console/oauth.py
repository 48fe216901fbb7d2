"""Console sign-in through the authorization server, in a real browser: the operator and the
approver each follow the link on the sign-in page to Warden's built-in authorization server, log
in on its consent page, and come back signed in with their own rights; a wrong password comes back
with the console's own words for it.

Usage: python oauth.py CONSOLE_URL PASSWORD SCREENSHOT_DIR ADMIN_TOKEN
(run by `crates/warden/tests/gateway/console.rs`; users olivia (warden:admin) and amy
(warden:approve) share PASSWORD; Warden serves the fixture as upstream "fx")."""
import json
import sys
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import browser, check, shot, sign_out

CONSOLE, PASSWORD, SHOTS, TOKEN = sys.argv[1:5]


def attackers_session():
    """A real session of someone else's (here: signed in with the admin token as "mallory"):
    its cookie and CSRF token, which a page on another local port could plant."""
    req = urllib.request.Request(f"{CONSOLE}/console/sign-in", method="POST",
                                 data=json.dumps({"token": TOKEN, "name": "mallory"}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        cookie = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        return cookie, json.loads(r.read())["csrf"]


def through_the_server(d, wait, button, user, password, picture=None):
    """From the console's sign-in page, through the consent page, back to the console."""
    d.get(f"{CONSOLE}/console")
    wait.until(EC.visibility_of_element_located((By.ID, button))).click()
    wait.until(EC.presence_of_element_located((By.NAME, "username")))
    check(not d.current_url.startswith(CONSOLE), f"the browser is at the authorization server ({d.current_url})")
    page = d.find_element(By.TAG_NAME, "body").text
    check("Warden console" in page and "unverified" not in page, "the consent page names the console, verified")
    d.find_element(By.NAME, "username").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    if picture:
        shot(d, SHOTS, picture)
    d.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    wait.until(lambda d: d.current_url.startswith(f"{CONSOLE}/console"))


def main():
    d = browser()
    wait = WebDriverWait(d, 15)
    try:
        d.get(f"{CONSOLE}/console")
        wait.until(EC.visibility_of_element_located((By.ID, "oauth-admin")))
        check(d.find_element(By.ID, "oauth-approve").is_displayed(), "the sign-in page offers both roles")

        # The operator: back signed in, with every page; the CSRF token left the address bar.
        through_the_server(d, wait, "oauth-admin", "olivia", PASSWORD, picture="sign-in-oauth")
        wait.until(EC.text_to_be_present_in_element((By.ID, "who"), "olivia"))
        check("csrf" not in d.current_url, f"the token is not left in the address ({d.current_url})")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-upstream='fx']")))
        check(d.find_element(By.ID, "nav-kill-switches").is_displayed(), "the operator sees the kill switches")
        sign_out(d, wait)

        # A session planted through the address (a link, or a page on another port): the page
        # takes a CSRF token only with the nonce it made for its own flow.
        cookie, csrf = attackers_session()
        d.add_cookie({"name": "warden_console", "value": cookie, "path": "/"})
        d.get("about:blank")
        d.get(f"{CONSOLE}/console#csrf={csrf}&n=not-this-tabs-nonce")
        wait.until(EC.visibility_of_element_located((By.ID, "page-sign-in")))
        check("mallory" not in d.find_element(By.ID, "who").text
              and d.execute_script("return sessionStorage.getItem('warden-csrf')") is None,
              "a planted session is not taken up")
        d.delete_cookie("warden_console")

        # A wrong password: back at the sign-in page, told so in the console's words.
        through_the_server(d, wait, "oauth-admin", "olivia", "not the password")
        wait.until(EC.text_to_be_present_in_element((By.ID, "error"), "login failed"))
        check(d.find_element(By.ID, "page-sign-in").is_displayed(), "a failed login signs nobody in")

        # The approver: approvals only.
        through_the_server(d, wait, "oauth-approve", "amy", PASSWORD)
        wait.until(EC.text_to_be_present_in_element((By.ID, "who"), "amy"))
        wait.until(EC.visibility_of_element_located((By.ID, "page-approvals")))
        check(not d.find_element(By.ID, "nav-kill-switches").is_displayed()
              and not d.find_element(By.ID, "nav-overview").is_displayed(), "the approver sees approvals only")
        sign_out(d, wait)
    finally:
        d.quit()
    print("console oauth: all checks passed", flush=True)


if __name__ == "__main__":
    main()
