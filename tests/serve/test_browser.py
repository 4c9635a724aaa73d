"""The HTML form in a real browser: headless Chromium (Debian's package) driven by Selenium.

Needs `apt-get install -y chromium chromium-driver`. Without them the test is skipped locally
and fails when CI is set, so a CI image that lost the browser cannot pass silently.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from serve.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Flags from ../shared/ENVIRONMENT.md: without the background-networking ones Chromium keeps
# trying to reach the internet.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found; install with `apt-get install -y chromium chromium-driver`"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the browser test cannot run: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def serve_in_thread(app):
    """Yields the URL of `app` served on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def base_url(tiny_engine, tiny_settings):
    yield from serve_in_thread(create_app(tiny_engine, tiny_settings))


def wait_for(browser, css: str):
    """The element once the page after the form post has it (a click does not wait for navigation)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def test_the_form_highlights_the_answer_in_the_escaped_context(browser, base_url, tiny_engine):
    from selenium.webdriver.common.by import By

    question = "Who found <b>radium</b>?"
    context = "<i>Marie</i> Curie & Pierre Curie found radium in 1898.\tThey were in Paris — Ça va? 東京 🚀"
    browser.get(base_url + "/")
    browser.find_element(By.ID, "question").send_keys(question)
    # Pasted rather than typed: a typed Tab moves the focus, and ChromeDriver cannot type emoji.
    browser.execute_script(
        "arguments[0].value = arguments[1]", browser.find_element(By.ID, "context"), context
    )
    browser.find_element(By.ID, "ask").click()

    mark = wait_for(browser, "#highlighted mark")
    expected = tiny_engine.answer(question, context)[0]
    assert mark.get_attribute("textContent") == expected.text
    highlighted = browser.find_element(By.ID, "highlighted")
    assert highlighted.get_attribute("textContent") == context  # typed text shown as text, not markup
    assert highlighted.find_elements(By.TAG_NAME, "i") == []  # the <i> the user typed was escaped
    assert browser.find_element(By.ID, "score").text == f"{expected.score:.3f}"
    # The form keeps what was typed, so the user can edit and ask again.
    assert browser.find_element(By.ID, "question").get_attribute("value") == question
    assert browser.find_element(By.ID, "context").get_attribute("value") == context


def test_the_form_shows_a_validation_error(browser, base_url):
    from selenium.webdriver.common.by import By

    browser.get(base_url + "/")
    # Whitespace passes the browser's `required` check; the server must reject it.
    browser.find_element(By.ID, "question").send_keys("   ")
    browser.find_element(By.ID, "context").send_keys("Some context.")
    browser.find_element(By.ID, "ask").click()
    error = wait_for(browser, "#error")
    assert "'question' must not be whitespace only" in error.text
    assert browser.find_elements(By.ID, "result") == []


@pytest.fixture(scope="module")
def abstaining_url(abstaining_engine, tiny_settings):
    yield from serve_in_thread(create_app(abstaining_engine, tiny_settings))


def test_the_form_says_when_the_text_does_not_hold_the_answer(browser, abstaining_url):
    from selenium.webdriver.common.by import By

    browser.get(abstaining_url + "/")
    browser.find_element(By.ID, "question").send_keys("Who wrote the letter?")
    browser.find_element(By.ID, "context").send_keys("The bridge was repaired in the spring.")
    browser.find_element(By.ID, "handle_impossible_answer").click()
    browser.find_element(By.ID, "ask").click()
    verdict = wait_for(browser, "#no-answer")
    assert verdict.text == "The text does not contain the answer."
    assert browser.find_elements(By.CSS_SELECTOR, "#highlighted mark") == []
    assert browser.find_element(By.ID, "handle_impossible_answer").is_selected()  # the choice is kept


def test_the_api_docs_try_it_out_answers(browser, base_url, tiny_engine, tmp_path):
    """GET /docs (Swagger UI from bundled files), "Try it out" on POST /v1/answer, and the answer shows.
    QA_SCREENSHOT_DIR keeps the screenshot (docs/img/api-docs.png is these steps against `make serve`)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    question, context = "Who found radium?", "Marie Curie found radium in 1898."
    browser.set_window_size(1200, 1400)
    browser.get(base_url + "/docs")
    operation = wait_for(browser, "#operations-default-answer")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    WebDriverWait(browser, 30).until(expected_conditions.element_to_be_clickable(
        (By.CSS_SELECTOR, "#operations-default-answer .try-out__btn"))).click()
    body = wait_for(browser, "#operations-default-answer textarea.body-param__text")
    body.clear()
    body.send_keys(json.dumps({"question": question, "context": context}))
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    response = WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#operations-default-answer .live-responses-table .response-col_description pre")))
    expected = tiny_engine.answer(question, context)[0]
    WebDriverWait(browser, 30).until(lambda _: '"answer"' in response.text)
    assert f'"answer": "{expected.text}"' in response.text
    logs = [e for e in browser.get_log("browser") if "Content Security Policy" in e.get("message", "")]
    assert not logs, logs  # the relaxed CSP of /docs is enough for Swagger UI
    out = Path(os.environ.get("QA_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView()", operation)
    assert browser.save_screenshot(str(out / "api-docs.png"))


@pytest.fixture(scope="module")
def feedback_url(tiny_engine, tiny_settings, tmp_path_factory):
    import dataclasses

    database = tmp_path_factory.mktemp("browser-feedback") / "feedback.db"
    settings = dataclasses.replace(tiny_settings, feedback=True, feedback_url=f"sqlite:///{database}")
    for url in serve_in_thread(create_app(tiny_engine, settings)):
        yield url, settings.feedback_url


def test_selecting_the_right_words_and_pressing_wrong_stores_their_offsets(browser, feedback_url):
    from selenium.webdriver.common.by import By

    from feedback.store import FeedbackStore

    url, database = feedback_url
    context = "Miriam Holt built the Harbor Point lighthouse in 1874 — on the cape 🚀 north of the town."
    browser.get(url + "/")
    browser.find_element(By.ID, "question").send_keys("Where is the lighthouse?")
    browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, "context"), context)
    browser.find_element(By.ID, "ask").click()
    wait_for(browser, "#feedback")
    # Select "north of the town" in the highlighted text, as a user would with the mouse.
    browser.execute_script("""
        const pre = document.getElementById('highlighted');
        const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
        let node; while ((node = walker.nextNode())) {
          const at = node.data.indexOf('north of the town');
          if (at >= 0) { const range = document.createRange(); range.setStart(node, at);
            range.setEnd(node, at + 'north of the town'.length);
            const selection = document.getSelection(); selection.removeAllRanges(); selection.addRange(range); }
        }""")
    browser.find_element(By.ID, "verdict-wrong").click()
    assert "stored as item" in wait_for(browser, "#feedback-thanks").text
    (row,) = FeedbackStore(database).items()
    # Code-point offsets, past the emoji (two UTF-16 units in the browser, one character here).
    assert context[row["correction_start"]:row["correction_end"]] == "north of the town"
