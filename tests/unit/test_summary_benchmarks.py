"""The summary benchmarks' own arithmetic: the scoring of planted decisions and the scale estimates."""

from __future__ import annotations

from pathlib import Path

from benchmarks.summary_eval import Decision, score
from benchmarks.summary_scale import add_estimates, cutoff, write_chat


def test_a_decision_counts_when_its_fact_is_in_the_summary_and_a_citation_when_its_chunk_holds_it() -> None:
    decisions = [Decision("Решили: закупаем у «Гелиос».", "Гелио"), Decision("Утвердили 2 450 000.", "2 450 000")]
    chunks = {1: "Решили: закупаем у «Гелиос».", 2: "Утвердили 2 450 000.", 3: "Обсудили сроки."}
    summary = "- Закупаем у «Гелиос». [1]\n- Бюджет 2450000 [3]\n- Обсудили сроки [3]"
    assert score(summary, chunks, decisions) == {
        "planted": 2, "mentioned": 2, "citations_checked": 2, "citations_holding_fact": 1, "lines": 3,
        "lines_without_decision": 1}  # fmt: skip


def test_the_chat_grows_by_size_and_a_cutoff_selects_its_first_kilobytes(tmp_path: Path) -> None:
    marks = write_chat(tmp_path / "result.json", 8)
    assert marks[-1][1] >= 8 * 1024 and [t for t, _ in marks] == sorted(t for t, _ in marks)
    assert cutoff(marks, 2) < cutoff(marks, 4) < cutoff(marks, 8)
    first_over_2kb = next(t for t, total in marks if total >= 2048)
    assert cutoff(marks, 2) == first_over_2kb + 1


def test_sizes_not_run_are_estimated_from_the_largest_run_calls_per_planned_batch() -> None:
    planned = [{"kb": 16, "map_calls": 3}, {"kb": 128, "map_calls": 17}, {"kb": 1024, "map_calls": 131}]
    measured = [{"kb": 16, "llm_calls": 8}, {"kb": 128, "llm_calls": 47}]
    add_estimates(planned, measured, per_call=40.0)
    assert "estimated_calls" not in planned[0] and "estimated_calls" not in planned[1]
    assert planned[2]["estimated_calls"] == round(131 * 47 / 17) == 362
    assert planned[2]["estimated_seconds"] == 362 * 40
