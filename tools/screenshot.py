"""A PNG of a web page in headless Chromium after a few steps (fill a form, click, wait for a text),
for the screenshots in docs/.

    .venv/bin/python tools/screenshot.py URL OUT.png [--step STEP ...] [--size 1400x900]

Steps run in order; SELECTOR is CSS:
    type:SELECTOR=TEXT   clear the field and type TEXT
    click:SELECTOR       click the element once it is clickable
    close:SELECTOR       click it and wait until it is gone (a panel's close button)
    wait:TEXT            wait until the page's text contains TEXT (single-page apps render late)
    scroll:SELECTOR      scroll the element into view

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ACTIONS = ("type", "click", "close", "wait", "scroll")


def parse_step(text: str) -> tuple[str, str]:
    action, sep, argument = text.partition(":")
    if not sep or action not in ACTIONS or not argument:
        raise ValueError(f"step {text!r}: write ACTION:ARGUMENT with ACTION one of {', '.join(ACTIONS)}")
    if action == "type" and "=" not in argument:
        raise ValueError(f"step {text!r}: type takes SELECTOR=TEXT")
    return action, argument


def screenshot(url: str, out: str, steps: Sequence[tuple[str, str]] = (), size: str = "1400x900",
               timeout: float = 60) -> None:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(element) -> bool:
        try:
            return not element.is_displayed()
        except StaleElementReferenceException:
            return True

    width, height = (int(n) for n in size.lower().split("x"))
    profile = tempfile.mkdtemp(prefix="screenshot-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    wait = WebDriverWait(driver, timeout)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(url)
        for action, argument in steps:
            if action == "wait":
                wait.until(lambda d, text=argument: text in d.find_element(By.TAG_NAME, "body").text)
                continue
            selector, _, text = argument.partition("=") if action == "type" else (argument, "", "")
            if action == "type":
                field = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))
                field.clear()
                field.send_keys(text)
            elif action == "scroll":
                element = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))
                driver.execute_script("arguments[0].scrollIntoView()", element)
            else:
                element = wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, selector)))
                element.click()
                if action == "close":
                    wait.until(lambda _, e=element: gone(e))
        if not driver.save_screenshot(out):
            raise RuntimeError(f"chromium could not write {out}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--step", action="append", default=[], help="ACTION:ARGUMENT, in order (see above)")
    parser.add_argument("--size", default="1400x900", help="window size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    try:
        steps = [parse_step(s) for s in args.step]
    except ValueError as exc:
        parser.error(str(exc))
    screenshot(args.url, args.out, steps, args.size)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
