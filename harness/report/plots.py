"""deltas.png: Δ per metric with 95% CI whiskers, target and general tasks apart."""

from __future__ import annotations

import io

from harness.metrics import INFO
from harness.report.markdown import metric_order
from harness.shapes import ComparisonReport


def render_deltas_png(report: ComparisonReport) -> bytes:
    """deltas.png: each fraction metric's delta with its 95% interval, targets and forgetting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = []
    for role, title in (("target", "target tasks"), ("general", "general tasks (forgetting)")):
        rows = []
        for task, entry in sorted(report["tasks"].items()):
            if entry["role"] != role:
                continue
            for metric, m in sorted(entry["metrics"].items(), key=lambda kv: metric_order(kv[0])):
                info = INFO.get(metric)
                delta, (low, high) = m["delta"], m["ci95"]
                if info is None or info.scale != "fraction":
                    continue  # one axis in percentage points; raw-scale metrics stay in tables
                if delta is None or low is None or high is None:
                    continue  # not computable (null in the report): nothing to draw
                rows.append((f"{task} {metric}", 100 * delta, 100 * low, 100 * high,
                             m.get("significant")))
        if rows:
            groups.append((title, rows))
    height = sum(len(r) for _, r in groups) * 0.32 + 1.2 * max(len(groups), 1)
    fig, axes = plt.subplots(len(groups) or 1, 1, figsize=(8, max(height, 2.5)), squeeze=False,
                             gridspec_kw={"height_ratios": [len(r) for _, r in groups] or [1]})
    for ax, (title, rows) in zip(axes[:, 0], groups, strict=False):
        ys = list(range(len(rows)))[::-1]
        for y, (_, d, lo, hi, sig) in zip(ys, rows, strict=True):
            color = "#1a7f37" if sig and d > 0 else "#cf222e" if sig else "#57606a"
            ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [r[0] for r in rows])
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("Δ (percentage points), paired 95% CI")
    fig.suptitle(f"{report['before']['label']} → {report['after']['label']}", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
