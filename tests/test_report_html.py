"""report.html in a real browser (headless Chromium driven by Selenium): the summary numbers
equal report.json, the "right → wrong" filter shows the flips the samples hold, sorting by
Δ ROUGE-L orders the rows, a row opens in full. Skipped with a reason where Chromium or Selenium
is missing (.ci/run installs both). Also, without a browser: the page is self-contained and
data in it cannot become markup."""

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, minilm):
    out = tmp_path_factory.mktemp("html") / "demo"
    assert main(["demo", "--tiny", "--out", str(out)]) == 0
    return out


def _samples(folder, side, task):
    lines = (folder / "samples" / side / f"{task}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_page_is_self_contained_and_data_stays_text(demo, tmp_path):
    page = (demo / "report.html").read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page and " src=" not in page
    assert "<svg" in page  # the Δ plot is drawn in the page
    # a prediction holding markup and a closing script tag stays inert data
    from harness.report.html import render_html

    report = json.loads((demo / "report.json").read_text())
    before = _samples(demo, "before", "cnn_dailymail")
    before[0]["prediction"] = "</script><script>alert(1)</script><b>x</b>"
    html = render_html(report, {"before": {"cnn_dailymail": before}, "after": {}})
    assert "<script>alert(1)" not in html and "</script><script>alert" not in html


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (.ci/run installs it)")
    import tempfile

    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _visible_ids(section):
    from selenium.webdriver.common.by import By

    return [tr.get_attribute("data-id") for tr in
            section.find_elements(By.CSS_SELECTOR, "table.examples tbody tr.row")]


@pytest.mark.browser
def test_report_html_in_chromium(demo, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, demo / "report.html")
    report = json.loads((demo / "report.json").read_text())
    # the summary numbers are report.json's
    cells = browser.find_elements(By.CSS_SELECTOR, "td[data-key]")
    seen = 0
    for cell in cells:
        task, metric, field = cell.get_attribute("data-key").split(".")
        value = report["tasks"][task]["metrics"][metric][field]
        if value is not None:
            assert float(cell.get_attribute("data-value")) == pytest.approx(value, abs=1e-12)
            seen += 1
    assert seen >= 4 * sum(len(t["metrics"]) for t in report["tasks"].values()) - 2
    # "right → wrong": exactly the examples the samples say the adapter turned wrong
    before = {r["id"]: r for r in _samples(demo, "before", "hellaswag")}
    after = {r["id"]: r for r in _samples(demo, "after", "hellaswag")}
    flips = {i for i in before if before[i]["prediction"]["choice"] == before[i]["reference"]
             and after[i]["prediction"]["choice"] != after[i]["reference"]}
    assert flips, "the demo's adapter should flip some probe items"
    mc = browser.find_element(By.CSS_SELECTOR, 'section.task[data-task="hellaswag"]')
    Select(mc.find_element(By.CSS_SELECTOR, "select.filter")).select_by_value("right → wrong")
    assert set(_visible_ids(mc)) == flips
    # generations sorted by Δ ROUGE-L, most negative first
    gen = browser.find_element(By.CSS_SELECTOR, 'section.task[data-task="cnn_dailymail"]')
    Select(gen.find_element(By.CSS_SELECTOR, "select.sort")).select_by_value("d-rougeL")
    gb = {r["id"]: r for r in _samples(demo, "before", "cnn_dailymail")}
    ga = {r["id"]: r for r in _samples(demo, "after", "cnn_dailymail")}
    delta = {i: ga[i]["metrics"]["rougeL"] - gb[i]["metrics"]["rougeL"] for i in gb}
    ids = _visible_ids(gen)
    assert len(ids) == len(delta)
    assert [delta[i] for i in ids] == sorted(delta.values())
    # one example opened in full: reference, both outputs
    gen.find_element(By.CSS_SELECTOR, f'tr.row[data-id="{ids[0]}"]').click()
    detail = gen.find_element(By.CSS_SELECTOR, "tr.detail")
    text = detail.text
    assert gb[ids[0]]["reference"].split("\n")[0][:30] in text
    assert "base" in text and "adapter" in text
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def board(demo, tiny_lm, adapter, adapter_b, example_data, tmp_path_factory):
    """A leaderboard over a three-model run (base and two adapters) and the demo comparison."""
    root = tmp_path_factory.mktemp("board")
    assert main(["run", "--base", str(tiny_lm), "--adapter", str(adapter), "--adapter",
                 str(adapter_b), "--include-base", "--tasks", "hellaswag", "--data",
                 f"hellaswag={example_data['hellaswag']}", "--limit", "16",
                 "--out", str(root / "three")]) == 0
    assert main(["leaderboard", str(root / "three"), str(demo), "--sort", "hellaswag.acc",
                 "--out", str(root / "lb")]) == 0
    return root / "lb"


@pytest.mark.browser
def test_leaderboard_html_in_chromium(board, browser):
    """Click a column: rows sort by it, then the other way; a row's link opens its run page."""
    from selenium.webdriver.common.by import By

    _open(browser, board / "leaderboard.html")
    data = json.loads((board / "leaderboard.json").read_text())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#board tbody tr")) == len(data["rows"])

    def column():
        return [float(v) if (v := c.get_attribute("data-value")) else None for c in
                browser.find_elements(By.CSS_SELECTOR,
                                      '#board tbody td[data-key="hellaswag.acc"]')]

    values = [r["scores"].get("hellaswag", {}).get("acc", {}).get("value")
              for r in data["rows"]]
    present = sorted(v for v in values if v is not None)
    missing = [None] * values.count(None)  # rows without the column stay last either way
    assert len(present) == 3 and missing  # the three-model run; the demo's comparison row
    assert column() == present[::-1] + missing  # ranked by it
    head = browser.find_element(By.CSS_SELECTOR, '#board th[data-key="hellaswag.acc"]')
    head.click()
    assert column() == present[::-1] + missing
    assert head.get_attribute("aria-sort") == "descending"
    head.click()
    assert column() == present + missing and head.get_attribute("aria-sort") == "ascending"
    browser.find_element(By.CSS_SELECTOR, "#board th:nth-child(2)").click()  # by model name
    names = [c.text for c in browser.find_elements(By.CSS_SELECTOR,
                                                   "#board tbody td:nth-child(2)")]
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    link = browser.find_element(By.CSS_SELECTOR, "#board tbody a")
    target = link.get_attribute("href")
    link.click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'")
        and d.current_url == target)
    assert browser.find_elements(By.CSS_SELECTOR, "section.task")  # the run's own page
