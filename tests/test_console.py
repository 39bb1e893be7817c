"""The web console in a real browser (Debian's headless Chromium through its chromedriver)
against the one-command stack: enter the key, create a collection, drop a file and choose
another, watch the tasks reach `completed` live, search, delete. A screenshot of each step
goes to test-output/console/ (the path is printed)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.processes import REPO
from tests.support.stack import RunningStack, clean_env, running_stack

SCREENSHOTS = REPO / "test-output" / "console"
WAIT_S = 60
LIGHTHOUSE = (
    "# Lighthouse log\n\n## Lamp\n\nThe keeper polished the brass lamp of the lighthouse "
    "and trimmed its wick before the evening fog rolled in.\n"
)
BAKERY = "# Bakery\n\nRye loaves rest for two hours before they go into the stone oven.\n"
#: Drops a file on the drop zone as a user's drag and drop does (a DataTransfer of files).
DROP = """
const [name, text] = arguments;
const files = new DataTransfer();
files.items.add(new File([text], name, {type: "text/markdown"}));
const zone = document.getElementById("drop-zone");
for (const type of ["dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, {dataTransfer: files, bubbles: true, cancelable: true}));
}
"""
#: Elements reaching past the right edge of the window.
TOO_WIDE = """
return [...document.body.querySelectorAll("*")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter((e) => !e.closest(".table-scroll") && !e.closest(".visually-hidden"))
  .map((e) => `${e.tagName}#${e.id}.${e.className} ends at ${e.getBoundingClientRect().right}`);
"""
#: Controls without a name a screen reader could say.
UNLABELLED = """
return [...document.querySelectorAll("input, select, button, textarea")]
  .filter((c) => c.offsetParent !== null || c.type === "file")
  .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label")
                 && !c.textContent.trim())
  .map((c) => c.outerHTML);
"""


def browser_binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("no chromium/chromedriver on PATH: make setup installs Debian's")
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver_path = browser_binaries()
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    # Both paths given: Selenium downloads nothing.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[RunningStack]:
    async with running_stack(clean_env(tmp_path / "data", EMBEDPIPE_METRICS_PORT="0")) as running:
        yield running


class Steps:
    """The browser's steps, each ending in a numbered screenshot."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.wait = WebDriverWait(driver, WAIT_S)
        self.taken = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.taken += 1
        path = SCREENSHOTS / f"{self.taken:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")

    def find(self, css: str) -> webdriver.remote.webelement.WebElement:
        return self.wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def text_in(self, css: str, text: str) -> None:
        self.wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def drive(driver: WebDriver, url: str, key: str, upload_dir: Path) -> None:
    steps = Steps(driver)
    driver.get(url + "/console")
    steps.find("#api-key").send_keys(key)
    steps.shot("key")
    steps.find("#key-form button[type=submit]").click()
    steps.text_in("#connection", "following tasks live")
    assert driver.execute_script(UNLABELLED) == []

    steps.find("#new-collection").send_keys("logbook")
    steps.find("#create-form button").click()
    steps.text_in("#collection-title", "Collection logbook")
    steps.shot("collection")

    # One file dropped, one chosen in the file dialog; both reach `completed` from the
    # WebSocket's events (the page never polls a task).
    driver.execute_script(DROP, "lighthouse.md", LIGHTHOUSE)
    bakery = upload_dir / "bakery.md"
    bakery.write_text(BAKERY)
    driver.find_element(By.ID, "file-input").send_keys(str(bakery))
    steps.find("#tasks li")
    steps.shot("uploading")
    # Each event redraws the list, so a found bar may be replaced before it is read: the
    # wait is for a bar that is already complete, matched whole by its selector.
    for name in ("lighthouse.md", "bakery.md"):
        steps.find(
            f'#tasks li[data-status="completed"] progress[aria-label="{name} 100%"][value="100"]'
        )
    # The list refreshed once both ended (the upload's own refresh may show them processing).
    steps.wait.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#documents td.status-completed")) == 2
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, "#documents tbody tr")) == 2
    steps.shot("completed")

    steps.find("#query").send_keys("who cleaned the lamp before the fog?")
    steps.find("#search-form button").click()
    top = steps.find("#results li:first-child")
    assert "polished the brass lamp" in top.text and "Lamp" in top.text
    assert "lighthouse.md" in top.text  # its source document, by name
    lighthouse_id = top.get_attribute("data-document")
    steps.shot("search")

    driver.set_window_size(390, 844)  # a phone: nothing wider than the screen
    assert driver.execute_script(TOO_WIDE) == []
    steps.shot("phone")
    driver.set_window_size(1280, 1000)

    steps.find(f'#documents tr[data-document="{lighthouse_id}"] button').click()
    steps.wait.until(ec.alert_is_present()).accept()
    steps.wait.until(
        ec.invisibility_of_element_located(
            (By.CSS_SELECTOR, f'#documents tr[data-document="{lighthouse_id}"]')
        )
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, "#documents tbody tr")) == 1
    steps.shot("deleted")


async def test_the_console_uploads_follows_searches_and_deletes(
    stack: RunningStack, browser: WebDriver, tmp_path: Path
) -> None:
    await asyncio.to_thread(drive, browser, stack.ingestion_url, stack.key, tmp_path)
    # The API agrees: the dropped document is gone, the chosen one is searchable.
    headers = {"Authorization": f"Bearer {stack.key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        search = {"query": "brass lamp lighthouse", "mode": "SEARCH_MODE_KEYWORD"}
        url = f"{stack.ingestion_url}/api/v1/collections/logbook/search"
        async with http.post(url, json=search) as r:
            assert (await r.json()).get("results", []) == []
        async with http.get(f"{stack.ingestion_url}/api/v1/collections/logbook") as r:
            assert (await r.json())["document_count"] == 1


async def test_the_console_page_keeps_to_its_origin(stack: RunningStack) -> None:
    async with aiohttp.ClientSession() as http, http.get(stack.ingestion_url + "/console") as r:
        assert r.status == 200 and r.content_type == "text/html"
        policy = r.headers["Content-Security-Policy"]
        page = await r.text()
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
