"""The benchmark's outputs: a markdown table, a JSON file, and PNG plots (one line per target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| target | load | ok / sent | req/s | out tok/s | TTFT p50 / p99 ms | TPOT p50 ms | ITL p50 / p99 ms "
        "| E2E p50 / p95 / p99 ms | F1 | gold present |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["stats"]
        q = s["quality"]
        lines.append(
            f"| {r['target']} | {r['load']} | {s['completed']} / {s['requests']} | {s['request_throughput']:.2f} "
            f"| {s['output_tokens_per_s']:.1f} | {_ms(s['ttft_ms']['p50'])} / {_ms(s['ttft_ms']['p99'])} "
            f"| {_ms(s['tpot_ms']['p50'])} | {_ms(s['itl_ms']['p50'])} / {_ms(s['itl_ms']['p99'])} "
            f"| {_ms(s['e2e_ms']['p50'])} / {_ms(s['e2e_ms']['p95'])} / {_ms(s['e2e_ms']['p99'])} "
            f"| {_ratio(q['f1'])} | {_ratio(q['gold_present'])} |"
        )
    errors = [r for r in results if r["stats"]["errors"]]
    for r in errors:
        lines.append(
            f"\n{r['target']} at {r['load']}: {r['stats']['errors']} errors, e.g. {r['stats']['error_examples']}"
        )
    return "\n".join(lines) + "\n"


def plots(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Latency and throughput against load: one figure per load kind (closed: concurrency, open: rate)."""
    written = []
    for kind, label in (("closed", "concurrency"), ("open", "request rate (req/s)")):
        rows = [r for r in results if r["load_kind"] == kind]
        if not rows:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for target in dict.fromkeys(r["target"] for r in rows):
            mine = sorted((r for r in rows if r["target"] == target), key=lambda r: r["load_value"])
            x = [r["load_value"] for r in mine]
            axes[0].plot(x, [r["stats"]["ttft_ms"]["p50"] for r in mine], marker="o", label=target)
            axes[1].plot(x, [r["stats"]["e2e_ms"]["p95"] for r in mine], marker="o", label=target)
            axes[2].plot(x, [r["stats"]["output_tokens_per_s"] for r in mine], marker="o", label=target)
        for ax, title in zip(axes, ("TTFT p50 (ms)", "end-to-end p95 (ms)", "output tokens/s"), strict=True):
            ax.set_title(title)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
            if kind == "closed":  # levels like 1, 4, 16, 64: even spacing, plain numbers
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted({r["load_value"] for r in rows}))
                ax.xaxis.set_major_formatter(ScalarFormatter())
        axes[0].legend()
        fig.tight_layout()
        path = out_dir / f"bench-{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
