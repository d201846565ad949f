"""Per-level figures, named and defined as vLLM's `vllm bench serve` reports them.

TTFT: time to the first answer token. TPOT: (end-to-end - TTFT) / (output tokens - 1), per request.
ITL: every gap between consecutive streamed chunks. E2E: send to last byte. Throughputs are over the
level's wall time. Quality (answer F1, gold answer present) uses the SQuAD normalisation of cli.eval.
"""

from __future__ import annotations

import statistics
from typing import Any

from backend.services import eval_metrics as m
from cli.benchkit.load import Run


def distribution(values: list[float]) -> dict[str, float | None]:
    """mean, p50, p95, p99 in milliseconds (None when there is nothing to measure)."""
    if not values:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    ordered = sorted(v * 1000 for v in values)

    def pct(q: float) -> float:
        # linear interpolation between closest ranks, as numpy.percentile does by default
        pos = (len(ordered) - 1) * q
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 2)

    return {"mean": round(statistics.fmean(ordered), 2), "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)}


def summarise(run: Run) -> dict[str, Any]:
    ok = [(p, s) for p, s in run.samples if s.ok]
    errors = [s.error for _, s in run.samples if not s.ok]
    tokens = sum(s.output_tokens for _, s in ok)
    graded = [(p, s) for p, s in ok if p.answers]
    return {
        "requests": len(run.samples),
        "completed": len(ok),
        "errors": len(errors),
        "error_examples": sorted({e or "?" for e in errors})[:3],
        "seconds": round(run.seconds, 3),
        "request_throughput": round(len(ok) / run.seconds, 3) if run.seconds else 0.0,
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / run.seconds, 2) if run.seconds else 0.0,
        "ttft_ms": distribution([s.ttft for _, s in ok if s.ttft is not None]),
        "tpot_ms": distribution([t for _, s in ok if (t := s.tpot) is not None]),
        "itl_ms": distribution([gap for _, s in ok for gap in s.itl]),
        "e2e_ms": distribution([s.e2e for _, s in ok if s.e2e is not None]),
        "quality": {
            "graded": len(graded),
            "f1": round(m.mean([m.token_f1(s.text, p.answers) for p, s in graded]), 3) if graded else None,
            "gold_present": round(m.mean([m.contains_gold(s.text, p.answers) for p, s in graded]), 3)
            if graded
            else None,
        },
    }
