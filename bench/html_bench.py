"""report.html at full size: `harness compare` of a tiny model and a LoRA on it over all 10,042
HellaSwag validation rows (two variants, so 20,084 samples), then the page's size and its time
to an interactive page in headless Chromium (navigation start to the script's ready mark, and
to the first example rows), median of 5 loads. Writes the "cpu" entry of
bench/results/html.json (OUT=bench/results to update the committed file).

    python bench/prepare_data.py && python bench/html_bench.py     (CPU; needs chromium,
    chromedriver and selenium, as .ci/run's browser tier installs)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import write_result  # noqa: E402

DATA = ROOT / "bench" / "data" / "hellaswag_val.jsonl"


def _models(work: Path) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness import examples
    from harness.tiny import build_tiny_lm

    base = work / "tiny"
    if not (base / "config.json").exists():
        build_tiny_lm(base, examples.corpus())
    adapter = work / "lora"
    if not (adapter / "adapter_config.json").exists():
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.normal_(0.0, 0.5)
        model.save_pretrained(adapter)
    return base, adapter


def _load_times(page: Path, loads: int) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    ready, rows = [], []
    for _ in range(loads):
        profile = tempfile.mkdtemp(prefix="harness-bench-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--no-first-run", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(page.resolve().as_uri())
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
            times = driver.execute_script(
                "const ready = performance.getEntriesByName('harness-ready')[0];"
                "return [ready ? ready.startTime : null,"
                " performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd];")
            ready.append(times[0])
            rows.append(times[1])
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
    return {"ready_ms_median": statistics.median(ready), "ready_ms_all": ready,
            "dom_content_loaded_ms_median": statistics.median(rows)}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="harness-html-bench-"))
    base, adapter = _models(work)
    out = work / "cmp"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "compare", "--base", str(base), "--adapter",
                    str(adapter), "--tasks", "hellaswag", "--data", f"hellaswag={DATA}",
                    "--general", "hellaswag", "--no-cache", "--out", str(out)], check=True,
                   env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    page = out / "report.html"
    samples = sum(len(p.read_text().splitlines()) for p in (out / "samples").rglob("*.jsonl"))
    result = {"benchmark": "report_html", "rows": 10042, "samples": samples,
              "compare_seconds": round(seconds, 1),
              "html_bytes": page.stat().st_size,
              "html_mib": round(page.stat().st_size / 2**20, 2),
              "samples_mib": round(sum(p.stat().st_size for p in (out / "samples").rglob("*"))
                                   / 2**20, 2),
              **_load_times(page, 5),
              "chromium": subprocess.run(["chromium", "--version"], capture_output=True,
                                         text=True).stdout.strip()}
    write_result("html", "cpu", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
