"""What the console's browser scripts share: headless Chromium from Debian's packages (never a
downloaded browser or driver), checks that say what they checked, and stale-tolerant clicks."""
import os

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# Never let Selenium fetch a driver or a browser: use the Debian packages.
os.environ["SE_OFFLINE"] = "true"
os.environ["SE_AVOID_STATS"] = "true"


def check(cond, what):
    if not cond:
        raise SystemExit(f"console check failed: {what}")
    print(f"ok: {what}", flush=True)


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=o)


def click(d, css):
    """Click the element `css` names, again if the page re-rendered it meanwhile (it refreshes
    its tables every two seconds)."""
    def go(d):
        d.find_element(By.CSS_SELECTOR, css).click()
        return True
    WebDriverWait(d, 15, ignored_exceptions=[StaleElementReferenceException]).until(go)


def shot(d, shots, name):
    os.makedirs(shots, exist_ok=True)
    d.save_screenshot(os.path.join(shots, f"{name}.png"))


def sign_out(d, wait):
    """Sign out of the console and see the sign-in page."""
    wait.until(EC.element_to_be_clickable((By.ID, "sign-out"))).click()
    wait.until(EC.visibility_of_element_located((By.ID, "page-sign-in")))
