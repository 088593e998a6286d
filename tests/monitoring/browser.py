"""Headless Chromium for browser tests: Debian's chromium and chromedriver through
Selenium, never a downloaded browser (the network is isolated)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--lang=zh-CN",
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} not found: apt-get install {package} (scripts/setup-machine.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A fresh headless Chromium (own profile directory), quit and cleaned afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="docex-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(
    driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20.0
) -> Any:
    """WebDriverWait(driver, timeout).until(condition), polling often. An element that
    went stale (a form POST or auto-refresh replaced it) counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def keep_screenshot(driver: WebDriver, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    """Always into tmp_path; with `docs`, also into docs/ when missing there or when
    DOCEX_UPDATE_SCREENSHOTS=1, so test runs do not rewrite a tracked file for nothing."""
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = DOCS / name
    if docs and (not target.exists() or os.environ.get("DOCEX_UPDATE_SCREENSHOTS") == "1"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def css(driver: WebDriver, selector: str) -> list[WebElement]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def click(driver: WebDriver, selector: str, timeout: float = 20.0) -> None:
    """Click the first element matching `selector`, found afresh until the click lands: a
    page that re-renders a list on its own timer can replace a row between finding it and
    clicking it (StaleElementReferenceException), and a stale click never happened."""

    def attempt(d: WebDriver) -> bool:
        found = css(d, selector)
        if not found:
            return False
        found[0].click()
        return True

    wait_for(driver, attempt, timeout)


def _read(driver: WebDriver, selector: str, read: Callable[[WebElement], T], missing: T) -> T:
    """`read` of the first element matching `selector`, found afresh if a re-render replaced
    it in between (StaleElementReferenceException); `missing` when there is none."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(50):
        found = css(driver, selector)
        if not found:
            return missing
        try:
            return read(found[0])
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{selector}: replaced 50 times in a row while being read")


def visible(driver: WebDriver, element_id: str) -> bool:
    return _read(driver, f"#{element_id}", lambda e: bool(e.is_displayed()), False)


def text_of(driver: WebDriver, selector: str) -> str:
    return _read(driver, selector, lambda e: str(e.text), "")


def attribute_of(driver: WebDriver, selector: str, name: str) -> str:
    return _read(driver, selector, lambda e: e.get_attribute(name) or "", "")
