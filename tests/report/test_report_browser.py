"""The report in a real headless browser (Debian's chromium + chromedriver, driven by selenium): it loads
without console errors, every image decodes, the tables hold the run's numbers, runs sit side by side, and a
screenshot lands in the test's folder. Where no browser could be installed (`make test` tries apt-get), the
test skips and says why."""

import importlib.util
import json
import shutil

import pytest

# --disable-* flags: this machine's closed network otherwise fills the console with fetch errors
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,3000"]


def _browser_or_skip():
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    driver = shutil.which("chromedriver")
    missing = [name for name, found in (("selenium (pip install selenium)", importlib.util.find_spec("selenium")),
                                        ("chromium", browser), ("chromedriver", driver)) if not found]
    if missing:
        pytest.skip(f"no headless browser: {', '.join(missing)} not installed (`make test` tries "
                    "`apt-get install chromium chromium-driver`, which needs root and a Debian package mirror)")
    return browser, driver


@pytest.fixture(scope="session")  # session scope: set up (or skipped) before the runs are trained
def browser(tmp_path_factory):
    binary, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as e:
        pytest.skip(f"chromium is installed but did not start headless: {str(e).splitlines()[0]}")
    yield driver
    driver.quit()


def test_report_loads_cleanly_in_a_headless_browser(browser, report_file, report_runs, tmp_path):
    browser.get(report_file.resolve().as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) >= 8 and all(done and w > 0 and h > 0 for done, w, h in images)
    cells = browser.execute_script("return Array.from(document.querySelectorAll('td')).map(c => c.textContent)")
    fm = report_runs[0]
    for row in json.loads((fm / "eval.json").read_text())["rows"]:
        assert f"{row['w2']:.4f}" in cells and f"{row['w2_ratio']:.2f}x" in cells
    # the two runs' columns of each band sit side by side: same top, the second to the right
    boxes = browser.execute_script(
        "return Array.from(document.querySelector('.band').children).map(c => c.getBoundingClientRect().toJSON())")
    assert len(boxes) == 2 and boxes[0]["top"] == boxes[1]["top"] and boxes[1]["left"] > boxes[0]["right"]
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
