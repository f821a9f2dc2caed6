"""Coverage of the paired 95% intervals, old method vs new, by simulation (CPU; minutes).

    OUT=bench/results python bench/coverage.py [--sims-boot 400] [--sims 20000]

(writes the "cpu" entry of bench/results/coverage.json)

The old method is the percentile bootstrap of per-example differences (2,000 resamples) that
harness.stats used up to report schema 1. The new ones are those harness.stats uses now:
Tango's score interval with the mid-p McNemar test for 0/1 values, the paired t interval for
continuous values. Percentile and BCa bootstraps are also run on the harder continuous shapes,
as the measured basis for choosing the t interval. Prints JSON and a Markdown table to stderr.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import write_result  # noqa: E402
from coverage_shapes import SHAPES, paired_binary, rouge_like, shape  # noqa: E402

from harness.stats import paired_proportion_tables, paired_t_intervals  # noqa: E402

NS = (10, 30, 100, 1000)
RESAMPLES = 2000


def _seed(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def percentile_boot(diff: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    lo, hi = [], []
    n = diff.shape[1]
    for row in diff:
        means = row[rng.integers(0, n, (RESAMPLES, n))].mean(axis=1)
        a, b = np.percentile(means, [2.5, 97.5])
        lo.append(a)
        hi.append(b)
    return np.asarray(lo), np.asarray(hi)


def bca_boot(diff: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    lo, hi = [], []
    n = diff.shape[1]
    for row in diff:
        means = row[rng.integers(0, n, (RESAMPLES, n))].mean(axis=1)
        est = row.mean()
        below = np.mean(means < est) + 0.5 * np.mean(means == est)
        below = min(max(below, 1 / (RESAMPLES + 1)), RESAMPLES / (RESAMPLES + 1))
        z0 = norm.ppf(below)
        jack = (row.sum() - row) / (n - 1)
        c = jack.mean() - jack
        den = 6 * np.sum(c ** 2) ** 1.5
        acc = np.sum(c ** 3) / den if den > 0 else 0.0
        levels = [norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))
                  for z in (norm.ppf(0.025), norm.ppf(0.975))]
        a, b = np.quantile(means, levels)
        lo.append(a)
        hi.append(b)
    return np.asarray(lo), np.asarray(hi)


def rate(lo, hi, truth) -> float:
    return round(100 * float(np.mean((lo <= truth) & (truth <= hi))), 1)


def sig_rate(lo, hi) -> float:
    return round(100 * float(np.mean((lo > 0) | (hi < 0))), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims-boot", type=int, default=400, help="simulations per bootstrap cell")
    ap.add_argument("--sims", type=int, default=20_000, help="simulations per closed-form cell")
    args = ap.parse_args()
    out: dict[str, dict] = {"sims_bootstrap": args.sims_boot, "sims_closed_form": args.sims,
                            "resamples": RESAMPLES, "cells": {}}
    cells = out["cells"]
    for n in NS:
        # paired 0/1: the setting, 10-12% discordant, true delta +2 pp
        for label, (p10, p01) in (("binary", (0.05, 0.07)), ("binary-null", (0.055, 0.055))):
            rng = _seed(label, n)
            tab, truth = paired_binary(rng, n, args.sims, p10, p01)
            lo, hi, p = paired_proportion_tables(tab[:, 0], tab[:, 1], np.full(len(tab), n))
            new = {"coverage": rate(lo, hi, truth), "significant": round(100 * float(
                np.mean(p < 0.05)), 2)}
            few = tab[:args.sims_boot]
            diff = np.zeros((len(few), n))
            for i, (b, c, *_rest) in enumerate(few):
                diff[i, :b], diff[i, b:b + c] = -1.0, 1.0
            olo, ohi = percentile_boot(diff, rng)
            old = {"coverage": rate(olo, ohi, truth), "significant": sig_rate(olo, ohi)}
            cells[f"{label} n={n}"] = {"old_percentile": old, "new_tango_midp": new}
        # ROUGE-like, true delta +5 pp and 0
        for label, delta in (("rouge", 0.05), ("rouge-null", 0.0)):
            rng = _seed(label, n)
            b, a, truth = rouge_like(rng, n, args.sims, delta)
            lo, hi, _ = paired_t_intervals(b, a)
            new = {"coverage": rate(lo, hi, truth), "significant": sig_rate(lo, hi)}
            olo, ohi = percentile_boot(a[:args.sims_boot] - b[:args.sims_boot], rng)
            old = {"coverage": rate(olo, ohi, truth), "significant": sig_rate(olo, ohi)}
            cells[f"{label} n={n}"] = {"old_percentile": old, "new_t": new}
        for name in SHAPES:
            rng = _seed(name, n)
            b, a, truth = shape(name, rng, n, args.sims_boot, 0.03)
            lo, hi, _ = paired_t_intervals(b, a)
            plo, phi = percentile_boot(a - b, rng)
            blo, bhi = bca_boot(a - b, rng)
            cells[f"{name} n={n}"] = {"t": rate(lo, hi, truth), "percentile": rate(plo, phi, truth),
                                      "bca": rate(blo, bhi, truth)}
        print(f"n={n} done", file=sys.stderr, flush=True)
    write_result("coverage", "cpu", out)


if __name__ == "__main__":
    main()
