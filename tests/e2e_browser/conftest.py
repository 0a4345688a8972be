"""Headless Chromium for the browser tests: Debian's chromium and chromium-driver, driven by Selenium.

Nothing is downloaded: Selenium gets the system chromedriver's path, so its driver manager never runs. Where
Chromium, ChromeDriver or Selenium is missing the tests skip with the command that enables them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENABLE = (
    "apt-get update && apt-get install -y chromium chromium-driver (Debian), then pip install -e '.[dev]';"
    " or set CHROMIUM and CHROMEDRIVER to the binaries"
)
# As root in a container and on a closed network: no sandbox, no GPU, nothing that phones home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _binary(variable: str, *names: str) -> str | None:
    if os.environ.get(variable):
        path = os.environ[variable]
        return path if os.access(path, os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = _binary("CHROMIUM", "chromium", "chromium-browser")
    chromedriver = _binary("CHROMEDRIVER", "chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(f"no Chromium/ChromeDriver on this machine; to run the browser tests: {ENABLE}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed; to run the browser tests: {ENABLE}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=chromedriver, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
