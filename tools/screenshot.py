"""A PNG of a web page in headless Chromium, once the page shows a given text (single-page apps
such as the MLflow UI render after load).

    .venv/bin/python tools/screenshot.py URL OUT.png [--wait-for TEXT] [--click LABEL ...] [--size 1400x900]

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def screenshot(url: str, out: str, wait_for: str | None = None, size: str = "1400x900", timeout: float = 60,
               click: tuple[str, ...] = ()) -> None:
    """`click`: aria-labels of elements to click first (e.g. a panel's "Close"); each must go away."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    width, height = (int(n) for n in size.lower().split("x"))
    profile = tempfile.mkdtemp(prefix="screenshot-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(url)
        if wait_for:
            WebDriverWait(driver, timeout).until(lambda d: wait_for in d.find_element(By.TAG_NAME, "body").text)
        for label in click:
            visible = [e for e in driver.find_elements(By.CSS_SELECTOR, f'[aria-label="{label}"]') if e.is_displayed()]
            if not visible:
                raise RuntimeError(f"no visible element with aria-label {label!r} on {url}")
            visible[0].click()
            WebDriverWait(driver, timeout).until(lambda d, e=visible[0]: _gone(e))
        if not driver.save_screenshot(out):
            raise RuntimeError(f"chromium could not write {out}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _gone(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return not element.is_displayed()
    except StaleElementReferenceException:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait-for", help="take the picture once the page's text contains this")
    parser.add_argument("--size", default="1400x900", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--click", action="append", default=[], help="aria-label of an element to click first")
    args = parser.parse_args(argv)
    screenshot(args.url, args.out, args.wait_for, args.size, click=tuple(args.click))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
