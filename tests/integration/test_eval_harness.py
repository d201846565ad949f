"""The evaluation harness end to end on a tiny SQuAD file: real embedder, throwaway store, real LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import eval as eval_cli
from tests.conftest import LlamaServer

SQUAD = {"version": "1.1", "data": [
    {"title": "Pumps", "paragraphs": [
        {"context": "The Glimmer pump has a maximum pressure of 9 bar. It was built in Oslo.",
         "qas": [{"id": "q1", "question": "What is the maximum pressure of the Glimmer pump?",
                  "answers": [{"text": "9 bar", "answer_start": 43}]},
                 {"id": "q2", "question": "Where was the Glimmer pump built?",
                  "answers": [{"text": "Oslo", "answer_start": 66}]}]},
        {"context": "Captain Whiskers is the ship's cat and sleeps in the engine room.",
         "qas": [{"id": "q3", "question": "Where does the ship's cat sleep?",
                  "answers": [{"text": "the engine room", "answer_start": 49}]}]}]},
    {"title": "Reactors", "paragraphs": [
        {"context": "The Zorblat reactor runs at 42 kelvin and was designed by Mira Quell.",
         "qas": [{"id": "q4", "question": "Who designed the Zorblat reactor?",
                  "answers": [{"text": "Mira Quell", "answer_start": 58}]}]}]},
]}  # fmt: skip


@pytest.fixture
def squad(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SQUAD))
    return path


def test_retrieval_and_answer_metrics_on_a_tiny_set(
    squad: Path, tmp_path: Path, llm_server: LlamaServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("LLM_MAX_TOKENS", "48")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "never-used"))
    out = tmp_path / "report.json"
    args = [str(squad), "--answers", "--stride", "2", "--limit", "2", "--top-k", "2", "--out", str(out)]
    assert eval_cli.main(args) == 0
    (report,) = json.loads(out.read_text())
    assert (report["documents"], report["questions"]) == (3, 4)
    by_mode = {r["mode"]: r for r in report["retrieval"]}
    assert list(by_mode) == ["dense", "sparse", "hybrid"]  # the default --compare, side by side
    for r in by_mode.values():
        assert set(r["ranks"]) == {"q1", "q2", "q3", "q4"}
        assert r["ranks"]["q4"] == 1 and r["ranks"]["q3"] == 1  # unambiguous questions find their paragraph
        assert 0.0 < r["ndcg"] <= 1.0 and r["recall_k"] == 1.0  # 3 documents: all within the top 10
    answers = report["answers"]
    assert answers["n"] == 2 and answers["llm_errors"] == 0 and len(answers["rows"]) == 2
    assert [row["id"] for row in answers["rows"]] == ["q1", "q3"]  # every second question
    for row in answers["rows"]:
        assert 0.0 <= row["f1"] <= 1.0 and row["answer"] and row["model"] == answers["llm_model"]
        assert 0 < row["ttft_s"] <= row["total_s"]
        assert set(row["cited"]) <= {1, 2} and set(row["model_cited"]) <= {1, 2}
    citing = [r for r in answers["rows"] if r["cited"]]
    assert answers["cite_rate"] == len(citing) / 2
    holding = sum(r["gold_in_cited_source"] for r in citing)
    assert answers["cited_holds_gold"] == (holding / len(citing) if citing else 0)
    assert 0 < answers["ttft_p50_s"] <= answers["ttft_p90_s"] and answers["same_language"] >= 0
    table = capsys.readouterr().out
    assert "| tiny.json | dense |" in table and "| tiny.json | hybrid |" in table and "gold in a cited source" in table
    assert "cited source holds gold" in table and "first token p50 / p90 s" in table
    assert "any word form" in table and answers["gold_in_answer_any_form"] >= answers["gold_in_answer"]
    assert not (tmp_path / "never-used").exists()  # the service's store is never touched


def test_the_generated_conversational_set_finds_each_facts_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import conversation_set

    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "never-used"))
    data = tmp_path / "set.json"
    assert conversation_set.main(["--out", str(data), "--facts", "6"]) == 0
    generated = json.loads(data.read_text())
    assert len(generated["documents"]) == 8 and len(generated["questions"]) == 12
    out = tmp_path / "report.json"
    assert eval_cli.main([str(data), "--compare", "hybrid", "--out", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    plain, filtered = report["retrieval"]
    assert (plain["filtered"], filtered["filtered"]) == (False, True)
    for r in (plain, filtered):  # the chunk holding the fact's message, in Russian and English exports
        assert r["recall_5"] >= 0.9, r["ranks"]
        assert set(r["recall_5_by_kind"]) == {
            f"{lang} {kind}" for lang in ("ru", "en") for kind in ("who", "when", "amount")
        }
    assert "hybrid, each question's filter" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli.main([str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"no": "data"}')
    assert eval_cli.main([str(bad), "--out", str(tmp_path / "r.json")]) == 2
    assert "not a SQuAD-format JSON file" in capsys.readouterr().err
    assert eval_cli.main([str(bad), "--compare", "dense,bm42"]) == 2
    assert "unknown retrieval mode(s) ['bm42']; available: dense, sparse, hybrid" in capsys.readouterr().err


def test_unanswerable_questions_come_from_articles_that_are_not_indexed(
    squad: Path, tmp_path: Path, llm_server: LlamaServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("LLM_MAX_TOKENS", "32")
    out = tmp_path / "report.json"
    args = [str(squad), "--unanswerable", "--compare", "hybrid", "--top-k", "2", "--out", str(out)]
    assert eval_cli.main(args) == 0
    (report,) = json.loads(out.read_text())
    assert (report["documents"], report["questions"]) == (2, 3)  # article 0 indexed; article 1 held out
    assert [r["id"] for r in report["unanswerable"]["rows"]] == ["q4"]
    assert "answers" not in report
    table = capsys.readouterr().out
    assert "| tiny.json | 1 |" in table and "questions the documents cannot answer" in table


# The tiny set translated, question by question, keeping the ids (as XQuAD's languages do).
RUSSIAN_QUESTIONS = {"q1": "Какое максимальное давление у насоса Glimmer?", "q2": "Где построили насос Glimmer?",
                     "q3": "Где спит корабельный кот?", "q4": "Кто спроектировал реактор Zorblat?"}  # fmt: skip


def translated(ids: dict[str, str]) -> dict[str, object]:
    data = json.loads(json.dumps(SQUAD))
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                qa["question"] = ids.get(qa["id"], qa["question"])
                qa["id"] = qa["id"] if qa["id"] in ids else qa["id"] + "-other"
    return data


def test_questions_from_a_translation_are_asked_of_the_indexed_paragraphs(
    squad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ru = tmp_path / "tiny.ru.json"
    ru.write_text(json.dumps(translated(RUSSIAN_QUESTIONS), ensure_ascii=False))
    out = tmp_path / "report.json"
    args = [str(squad), "--questions-from", str(ru), "--compare", "dense,sparse,hybrid", "--out", str(out)]
    assert eval_cli.main(args) == 0
    (report,) = json.loads(out.read_text())
    assert report["questions_from"] == str(ru) and (report["documents"], report["questions"]) == (3, 4)
    dense, sparse, hybrid = (r["ranks"] for r in report["retrieval"])
    # The Russian question about the cat shares no word with any English paragraph, the one about the
    # reactor only its name: the lexical side finds the second alone (the English questions find both)
    assert sparse["q3"] == 0 and sparse["q4"] == 1
    # the multilingual embedder finds both, and so does the default hybrid ranking
    assert dense["q3"] == dense["q4"] == hybrid["q3"] == hybrid["q4"] == 1
    assert "| tiny.json, questions of tiny.ru.json | dense |" in capsys.readouterr().out


RUSSIAN_SQUAD = {"version": "1.1", "data": [
    {"title": "Насосы", "paragraphs": [
        {"context": "Насос Glimmer развивает давление до 9 бар. Его построили в Осло.",
         "qas": [{"id": "q1", "question": RUSSIAN_QUESTIONS["q1"], "answers": [{"text": "9 бар", "answer_start": 0}]},
                 {"id": "q2", "question": RUSSIAN_QUESTIONS["q2"], "answers": [{"text": "Осло", "answer_start": 0}]}]},
        {"context": "Капитан Усатый - корабельный кот, он спит в машинном отделении.",
         "qas": [{"id": "q3", "question": RUSSIAN_QUESTIONS["q3"],
                  "answers": [{"text": "в машинном отделении", "answer_start": 0}]}]}]},
    {"title": "Реакторы", "paragraphs": [
        {"context": "Реактор Zorblat работает при 42 кельвинах, его спроектировала Мира Квелл.",
         "qas": [{"id": "q4", "question": RUSSIAN_QUESTIONS["q4"],
                  "answers": [{"text": "Мира Квелл", "answer_start": 0}]}]}]},
]}  # fmt: skip


def test_an_archive_in_both_languages_is_asked_in_one(
    squad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ru = tmp_path / "tiny.ru.json"
    ru.write_text(json.dumps(RUSSIAN_SQUAD, ensure_ascii=False))
    out = tmp_path / "report.json"
    assert eval_cli.main([str(ru), "--mixed-with", str(squad), "--compare", "sparse,hybrid", "--out", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    assert report["mixed_with"] == str(squad) and (report["documents"], report["questions"]) == (3, 4)
    sparse, hybrid = report["retrieval"]
    # the reactor's article is indexed in English only: its Russian question shares only the name with it
    assert sparse["ranks"]["q4"] == 1 and hybrid["ranks"] == {"q1": 1, "q2": 1, "q3": 1, "q4": 1}
    assert hybrid["recall_5_by_kind"] == {"answer in the other language": 1.0, "answer in the question's language": 1.0}
    table = capsys.readouterr().out
    assert "| tiny.ru.json, odd articles from tiny.json | hybrid | nDCG@10 | answer in the other language 1.0" in table
    args = [str(ru), "--mixed-with", str(squad), "--questions-from", str(squad), "--out", str(out)]
    assert eval_cli.main(args) == 2
    assert "--mixed-with asks each file's own questions" in capsys.readouterr().err


def test_questions_from_a_file_that_is_not_a_translation_are_refused(
    squad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps(translated({"q1": "Какое максимальное давление у насоса Glimmer?"})))
    args = [str(squad), "--questions-from", str(other), "--out", str(tmp_path / "r.json")]
    assert eval_cli.main(args) == 2
    assert ("3 of 4 question ids of tiny.json are not in other.json (the first: 'q2'); --questions-from needs "
            "a translation of the same file") in capsys.readouterr().err  # fmt: skip
    assert eval_cli.main([str(squad), "--questions-from", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
