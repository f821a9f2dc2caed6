"""Copy what the benchmarks read from ../shared/data into bench/data (ignored by git; carried
to the GPU machine). Never commit these files."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = ROOT / "bench" / "data"


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with (SHARED / "hellaswag" / "hellaswag_val.jsonl").open() as src, \
            (DATA / "hellaswag.jsonl").open("w") as dst:
        for i, line in enumerate(src):
            if i >= 2000:
                break
            dst.write(line)
    # All 10,042 rows for the multi-GPU evaluation (parquet: a third of the JSON's size).
    import pandas as pd

    pd.read_json(SHARED / "hellaswag" / "hellaswag_val.jsonl", lines=True).to_parquet(
        DATA / "hellaswag_all.parquet", compression="zstd")
    shutil.copy(SHARED / "cnn_dailymail" / "cnn_dailymail_test_frank250.jsonl",
                DATA / "cnn_dailymail.jsonl")
    for split in ("train", "validation", "test"):
        shutil.copy(SHARED / "pubmed_summarization" / f"pubmed_{split}.jsonl",
                    DATA / f"pubmed_{split}.jsonl")
    print(sorted(p.name for p in DATA.iterdir()),
          sum(p.stat().st_size for p in DATA.iterdir()) // 1024, "KiB")


if __name__ == "__main__":
    main()
