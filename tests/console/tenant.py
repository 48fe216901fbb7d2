"""A tenant's approver in the console, in a real browser: tenant b's approver sees nothing of
tenant a's held call and cannot reach the kill switches; tenant a's approver sees it and
approves it.

Usage: python tenant.py CONSOLE_URL TENANT_A_APPROVER_KEY TENANT_B_APPROVER_KEY SCREENSHOT_DIR
(run by `crates/warden/tests/gateway/console.rs` while a call of tenant a waits)."""
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import browser, check, click, shot, sign_out

CONSOLE, KEY_A, KEY_B, SHOTS = sys.argv[1:5]


def sign_in(d, wait, key, who):
    d.get(f"{CONSOLE}/console")
    wait.until(EC.visibility_of_element_located((By.ID, "token"))).send_keys(key)
    d.find_element(By.ID, "sign-in-button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "who"), who))


def main():
    d = browser()
    wait = WebDriverWait(d, 15)
    try:
        sign_in(d, wait, KEY_B, "carol")
        wait.until(EC.text_to_be_present_in_element((By.ID, "approvals"), "Nothing is waiting"))
        check(not d.find_element(By.ID, "nav-kill-switches").is_displayed(), "tenant b's approver has no kill switches")
        d.get(f"{CONSOLE}/console#kill-switches")
        wait.until(EC.visibility_of_element_located((By.ID, "page-approvals")))
        check(not d.find_element(By.ID, "page-kill-switches").is_displayed(), "asking for the kill switches shows approvals")
        check("tenant b" in d.find_element(By.ID, "who").text, "the console names the approver's tenant")
        check(not d.find_elements(By.CSS_SELECTOR, "#approvals .card"), "tenant b sees nothing of tenant a's held call")
        sign_out(d, wait)

        sign_in(d, wait, KEY_A, "bob")
        card = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#approvals .card")))
        check("wire the money" in card.text and "tenant a" in card.text, f"tenant a's approver sees its call ({card.text[:80]})")
        shot(d, SHOTS, "approvals-tenant")
        click(d, "#approvals .card button.approve")
        wait.until(EC.text_to_be_present_in_element((By.ID, "approvals"), "Nothing is waiting"))
        sign_out(d, wait)
    finally:
        d.quit()
    print("console tenant: all checks passed", flush=True)


if __name__ == "__main__":
    main()
