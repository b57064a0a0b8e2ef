"""The console in a real browser (Debian's headless Chromium driven by selenium) on a phone-sized
screen: log in, see a simulated leakage alarm appear without reloading, acknowledge it, see the
state change, and see the red banner when the console goes away. Screenshots of the alarm list,
the alarm's timeline and the lost-connection banner are kept under the test's tmp dir
(``artefacts/``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import (
    ALARM,
    PASSWORD,
    add_user,
    running_console,
    running_gateway,
    site_yaml,
)
from tests.simproc import running_sim

CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = {"width": 390, "height": 844, "pixelRatio": 3.0}


def fresh(driver: Any, css: str, do: Callable[[Any], Any], timeout: float = 30) -> Any:
    """Find ``css`` and apply ``do`` to it until that is truthy, again if a live update
    replaced the element meanwhile; return what ``do`` returned."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(d: Any) -> Any:
        try:
            found = d.find_elements(By.CSS_SELECTOR, css)
            return found and do(found[0])
        except StaleElementReferenceException:
            return False

    return WebDriverWait(driver, timeout).until(attempt)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")):
        pytest.fail("Chromium is not installed: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"):  # fmt: skip
        opts.add_argument(flag)
    opts.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.timeout(240)
def test_phone_sees_the_alarm_arrive_live_acknowledges_it_and_sees_a_lost_connection(
    tmp_path: Path, mosquitto: Mosquitto, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "artefacts"
    shots.mkdir()
    site = site_yaml(tmp_path, "phone-park", mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "wang", "operator")
    card = f"a.alarm[data-alarm='{ALARM}']"
    with ExitStack() as stack:
        stack.enter_context(running_sim(site, {}))
        console = ExitStack()
        base = console.enter_context(running_console(site, db, "--heartbeat", "0.5"))
        stack.push(console)
        browser.get(base + "/")
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "username").send_keys("wang")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "alarm-count"))
        assert "0 active alarms" in browser.find_element(By.ID, "alarm-count").text
        # Mark this page: a reload would lose the mark.
        browser.execute_script("window.__notReloaded = true;")
        stack.enter_context(running_gateway(site))
        WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, card))
        assert browser.execute_script("return window.__notReloaded === true;")
        assert not browser.find_element(By.ID, "lost").is_displayed()
        assert browser.execute_script("return window.innerWidth;") <= PHONE["width"]
        states: list[str] = []
        fresh(browser, card, lambda e: states.append(e.get_attribute("data-state")) or True)
        assert states == ["unacknowledged"]
        browser.save_screenshot(str(shots / "alarm-list.png"))

        fresh(browser, card, lambda e: e.click() or True)
        fresh(browser, "#btn-ack", lambda e: e.click() or True)
        fresh(browser, "#alarm-state", lambda e: e.text.strip() == "acknowledged")
        WebDriverWait(browser, 30).until(lambda d: "wang via console" in d.page_source)
        fresh(browser, "#msg", lambda e: "ack: acknowledged" in e.text)
        browser.save_screenshot(str(shots / "alarm-timeline.png"))

        # The console goes away: the page must say it is no longer live.
        console.close()
        WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "lost").is_displayed())
        browser.save_screenshot(str(shots / "connection-lost.png"))
    for name in ("alarm-list.png", "alarm-timeline.png", "connection-lost.png"):
        assert (shots / name).stat().st_size > 1000, name
