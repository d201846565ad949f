"""Evaluation over a SQuAD-format file: each paragraph a document, each question's gold document its own
paragraph. Retrieval metrics always; answer metrics through the configured LLM when asked."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.services import eval_metrics as m
from backend.services.answering import AnswerService, AnswerStream, LLMUnavailableError, best_similarity
from backend.services.correspondence import normalized_key
from backend.services.ingest import IngestService, SourceFile
from backend.services.retrieval import ChunkFilter, RetrievalService, SearchOptions

# Names for --compare: a retrieval mode, or hybrid with one of Qdrant's rank fusions.
EVAL_MODES: dict[str, SearchOptions] = {
    "dense": SearchOptions(mode="dense"),
    "sparse": SearchOptions(mode="sparse"),
    "hybrid": SearchOptions(mode="hybrid", fusion="weighted"),
    "hybrid-rrf": SearchOptions(mode="hybrid", fusion="rrf"),
    "hybrid-dbsf": SearchOptions(mode="hybrid", fusion="dbsf"),
}


@dataclass
class EvalQuestion:
    id: str
    question: str
    answers: list[str]
    gold_path: str
    gold_message: str | None = None  # conversations: the message holding the fact (its chunk is the hit)
    kind: str | None = None  # conversations: who, when, amount
    filters: ChunkFilter | None = None  # conversations: a filter a user could add (participant or day)


@dataclass
class EvalSet:
    name: str
    documents: list[SourceFile]
    questions: list[EvalQuestion]


def load_squad(path: Path) -> EvalSet:
    """Paragraph i of article a becomes document `a-title/i.txt`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a SQuAD-format JSON file: {exc}") from exc
    documents: list[SourceFile] = []
    questions: list[EvalQuestion] = []
    for ai, article in enumerate(data):
        slug = re.sub(r"\W+", "-", str(article.get("title", "article")))[:40].strip("-")
        for pi, para in enumerate(article["paragraphs"]):
            doc_path = f"{ai:02d}-{slug}/{pi:03d}.txt"
            documents.append(SourceFile(doc_path, para["context"].encode("utf-8")))
            questions.extend(
                EvalQuestion(str(qa["id"]), qa["question"], [a["text"] for a in qa["answers"]], doc_path)
                for qa in para["qas"]
            )
    return EvalSet(path.name, documents, questions)


CONVERSATION_SET_FORMAT = "rag-conversation-set/1"  # written by cli.conversation_set


def load_dataset(path: Path) -> EvalSet:
    """A SQuAD-format file, or a conversational set from cli.conversation_set."""
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a JSON evaluation file: {exc}") from exc
    if isinstance(head, dict) and head.get("format") == CONVERSATION_SET_FORMAT:
        return load_conversation_set(path.name, head)
    return load_squad(path)


def load_conversation_set(name: str, data: dict[str, Any]) -> EvalSet:
    documents = [SourceFile(d["path"], d["content"].encode("utf-8")) for d in data["documents"]]
    questions = []
    for q in data["questions"]:
        f = q.get("filters") or {}
        filters = ChunkFilter(
            participants=[normalized_key(p) for p in f.get("participants", [])],
            sent_after=datetime.fromisoformat(f["sent_after"]).timestamp() if f.get("sent_after") else None,
            sent_before=datetime.fromisoformat(f["sent_before"]).timestamp() if f.get("sent_before") else None,
        )
        questions.append(EvalQuestion(q["id"], q["question"], q["answers"], q["gold_path"], q["gold_message"],
                                      f"{q.get('lang', '')} {q.get('kind', '')}".strip(), filters))  # fmt: skip
    return EvalSet(name, documents, questions)


def asked_from_translation(evalset: EvalSet, translation: EvalSet) -> EvalSet:
    """The same paragraphs asked in another language: each question becomes the question of the same id
    in `translation` (XQuAD's languages are one set of questions translated, with shared ids). The gold
    paragraph and the gold answers stay those of the indexed file: a question in Russian about an English
    paragraph should find that paragraph, and its answer quote it."""
    by_id = {q.id: q.question for q in translation.questions}
    missing = [q.id for q in evalset.questions if q.id not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(evalset.questions)} question ids of {evalset.name} are not in "
            f"{translation.name} (the first: {missing[0]!r}); --questions-from needs a translation of the same "
            "file, whose questions keep their ids"
        )
    questions = [replace(q, question=by_id[q.id]) for q in evalset.questions]
    return EvalSet(evalset.name, evalset.documents, questions)


SAME_LANGUAGE, OTHER_LANGUAGE = "answer in the question's language", "answer in the other language"


def mixed_with_translation(evalset: EvalSet, translation: EvalSet) -> EvalSet:
    """An archive in two languages: the even-numbered articles of `evalset` and the odd-numbered ones of its
    translation (XQuAD: the same articles, paragraphs and question ids), every question asked in `evalset`'s
    language. The answer to an odd article's question is then only in the other language, among chunks in
    the question's language about other things: a Russian mail archive with English specifications. Its
    gold paragraph and gold answers are the translation's; each question's `kind` says which it is."""
    by_id = {q.id: q for q in translation.questions}
    missing = [q.id for q in evalset.questions if q.id not in by_id]
    if missing or len(evalset.documents) != len(translation.documents):
        raise ValueError(
            f"{translation.name} is not a translation of {evalset.name} (question ids or paragraphs differ; "
            f"{len(missing)} ids missing): --mixed-with needs the same file in another language"
        )
    questions = [
        replace(q, kind=SAME_LANGUAGE) if _even(q.gold_path)
        else replace(q, answers=by_id[q.id].answers, gold_path=by_id[q.id].gold_path, kind=OTHER_LANGUAGE)
        for q in evalset.questions
    ]  # fmt: skip
    documents = [d for d in evalset.documents if _even(d.path)] + [
        d for d in translation.documents if not _even(d.path)
    ]
    return EvalSet(evalset.name, documents, questions)


def arranged(evalset: EvalSet, questions_from: EvalSet | None, mixed_with: EvalSet | None) -> EvalSet:
    """The set as `cli.eval` asks it: the questions of a translation (`--questions-from`), then the archive of
    both languages (`--mixed-with`), where given."""
    if questions_from is not None:
        evalset = asked_from_translation(evalset, questions_from)
    if mixed_with is not None:
        evalset = mixed_with_translation(evalset, mixed_with)
    return evalset


def _even(path: str) -> bool:
    """Whether the paragraph at `path` (as `load_squad` names it) belongs to an even-numbered article."""
    return int(path.split("-", 1)[0]) % 2 == 0


def split_unanswerable(evalset: EvalSet) -> tuple[EvalSet, list[EvalQuestion]]:
    """Keep the even-numbered articles; the questions of the odd-numbered ones, whose paragraphs are then
    not indexed, become questions the documents cannot answer."""

    kept = EvalSet(evalset.name, [d for d in evalset.documents if _even(d.path)],
                   [q for q in evalset.questions if _even(q.gold_path)])  # fmt: skip
    return kept, [q for q in evalset.questions if not _even(q.gold_path)]


@dataclass
class RetrievalReport:
    mode: str
    k: int
    ndcg: float
    recall_1: float
    recall_5: float
    recall_k: float
    mrr: float
    ranks: dict[str, int] = field(default_factory=dict)  # question id -> rank of its gold document (0: missed)
    seconds: float = 0.0
    filtered: bool = False  # each question asked with its own filter (conversational sets)
    recall_5_by_kind: dict[str, float] = field(default_factory=dict)  # conversational sets: who / when / amount
    ndcg_by_kind: dict[str, float] = field(default_factory=dict)


@dataclass
class AnswerReport:
    n: int
    exact_match: float
    f1: float
    gold_in_answer: float
    gold_in_cited_source: float  # over all answers (an answer without a citation counts 0)
    abstention_rate: float
    llm_errors: int
    gold_in_answer_any_form: float = 0.0  # gold_in_answer with words compared by stem (Russian inflects)
    cite_rate: float = 0.0  # answers with at least one (checked) citation
    cited_holds_gold: float = 0.0  # among those, answers whose cited sources hold a gold answer
    right_cited_holds_gold: float = 0.0  # the same among answers that hold the gold (any form): attribution
    model_cite_rate: float = 0.0  # the same two for the citations the model itself wrote
    model_cited_holds_gold: float = 0.0
    right_model_cited_holds_gold: float = 0.0
    unsupported_rate: float = 0.0  # answers with a sentence no source supports
    same_language: float = 0.0  # answers in the question's script (Cyrillic or not)
    ttft_p50_s: float = 0.0  # first token, from the question's arrival (retrieval included)
    ttft_p90_s: float = 0.0
    total_p50_s: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


class Evaluator:
    def __init__(self, ingest: IngestService, retrieval: RetrievalService, answers: AnswerService) -> None:
        self.ingest = ingest
        self.retrieval = retrieval
        self.answers = answers

    async def index(self, space: str, evalset: EvalSet, batch: int = 64) -> int:
        chunks = 0
        for start in range(0, len(evalset.documents), batch):
            results = await self.ingest.ingest(space, evalset.documents[start : start + batch])
            chunks += sum(r.chunks for r in results)
        return chunks

    async def retrieval_metrics(
        self, space: str, evalset: EvalSet, *, mode: str = "dense", k: int = 10, depth: int = 50, filtered: bool = False
    ) -> RetrievalReport:
        """`depth` chunks are fetched per question: several chunks of one document count once. A question
        with a gold message is hit by the chunk that holds that message. `filtered`: with each question's
        own filter."""
        start = time.perf_counter()
        ranks: dict[str, int] = {}
        for q in evalset.questions:
            options = EVAL_MODES[mode]
            if filtered:
                options = SearchOptions(mode=options.mode, fusion=options.fusion, filters=q.filters)
            found = await self.retrieval.retrieve(space, q.question, depth, options)
            ranks[q.id] = m.rank_of(q.gold_path, [_hit_key(q, c.payload, i) for i, c in enumerate(found.chunks)], k)
        values = list(ranks.values())
        kinds = sorted({q.kind for q in evalset.questions if q.kind})
        by_kind = {kind: m.mean([m.recall_at(ranks[q.id], 5) for q in evalset.questions if q.kind == kind])
                   for kind in kinds}  # fmt: skip
        ndcg_by_kind = {kind: m.mean([m.ndcg_at(ranks[q.id]) for q in evalset.questions if q.kind == kind])
                        for kind in kinds}  # fmt: skip
        return RetrievalReport(
            mode=mode, k=k, ndcg=m.mean([m.ndcg_at(r) for r in values]),
            recall_1=m.mean([m.recall_at(r, 1) for r in values]), recall_5=m.mean([m.recall_at(r, 5) for r in values]),
            recall_k=m.mean([m.recall_at(r, k) for r in values]), mrr=m.mean([m.mrr_at(r) for r in values]),
            ranks=ranks, seconds=time.perf_counter() - start, filtered=filtered, recall_5_by_kind=by_kind,
            ndcg_by_kind=ndcg_by_kind,
        )  # fmt: skip

    async def answer_metrics(
        self, space: str, questions: list[EvalQuestion], *, top_k: int, mode: str | None = None
    ) -> AnswerReport:
        rows: list[dict[str, Any]] = []
        errors = 0
        for q in questions:
            try:
                answer = await self.answers.start(space, q.question, top_k, EVAL_MODES[mode] if mode else None)
                async for _ in answer.pieces():
                    pass
            except LLMUnavailableError as exc:
                errors += 1
                rows.append({"id": q.id, "error": str(exc)})
                continue
            rows.append(_answer_row(q, answer))
        ok = [r for r in rows if "error" not in r]
        citing = [r for r in ok if r["cited"]]
        citing_model = [r for r in ok if r["model_cited"]]
        right = [r for r in ok if r["gold_in_answer_any_form"]]
        ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
        return AnswerReport(
            n=len(questions), exact_match=m.mean([r["em"] for r in ok]), f1=m.mean([r["f1"] for r in ok]),
            gold_in_answer=m.mean([r["gold_in_answer"] for r in ok]),
            gold_in_cited_source=m.mean([r["gold_in_cited_source"] for r in ok]),
            gold_in_answer_any_form=m.mean([r["gold_in_answer_any_form"] for r in ok]),
            right_cited_holds_gold=m.mean([r["gold_in_cited_source"] for r in right if r["cited"]]),
            right_model_cited_holds_gold=m.mean([r["gold_in_model_cited_source"] for r in right if r["model_cited"]]),
            abstention_rate=m.mean([float(r["abstained"]) for r in ok]), llm_errors=errors,
            cite_rate=len(citing) / len(ok) if ok else 0.0,
            cited_holds_gold=m.mean([r["gold_in_cited_source"] for r in citing]),
            model_cite_rate=len(citing_model) / len(ok) if ok else 0.0,
            model_cited_holds_gold=m.mean([r["gold_in_model_cited_source"] for r in citing_model]),
            unsupported_rate=m.mean([float(r["unsupported"] > 0) for r in ok]),
            same_language=m.mean([float(r["same_language"]) for r in ok]),
            ttft_p50_s=m.percentile(ttft, 50), ttft_p90_s=m.percentile(ttft, 90),
            total_p50_s=m.percentile([r["total_s"] for r in ok], 50), rows=rows,
        )  # fmt: skip


def _hit_key(q: EvalQuestion, payload: dict[str, Any], position: int) -> str:
    """What a retrieved chunk counts as: its document, or (a conversational question) the gold itself
    when it holds the gold message and a chunk of its own otherwise."""
    path = str(payload.get("path"))
    if q.gold_message is None:
        return path
    held = {str(msg.get("id")) for msg in payload.get("messages") or [] if isinstance(msg, dict)}
    return q.gold_path if path == q.gold_path and q.gold_message in held else f"{path}#{position}"


def _answer_row(q: EvalQuestion, answer: AnswerStream) -> dict[str, Any]:
    texts = {s.n: str(s.chunk.payload.get("text", "")) for s in answer.sources}
    checked = answer.checked
    cited = sorted(checked.cited) if checked else []
    written = sorted(checked.written) if checked else []
    total_ms = answer.timings()["total_ms"] or 0.0
    return {
        "id": q.id, "kind": q.kind, "question": q.question, "gold": q.answers, "answer": answer.answer,
        "model": answer.model,
        "raw_answer": answer.raw_answer, "cited": cited, "model_cited": written,
        "em": m.exact_match(answer.answer, q.answers), "f1": m.token_f1(answer.answer, q.answers),
        "gold_in_answer": m.contains_gold(answer.answer, q.answers),
        "gold_in_answer_any_form": m.contains_gold_any_form(answer.answer, q.answers),
        "gold_in_cited_source": m.contains_gold(" ".join(texts[n] for n in cited), q.answers) if cited else 0.0,
        "gold_in_model_cited_source": (
            m.contains_gold(" ".join(texts[n] for n in written), q.answers) if written else 0.0
        ),
        "abstained": m.abstains(answer.answer), "unsupported": checked.unsupported if checked else 0,
        "same_language": m.same_language(answer.answer, q.question),
        "ttft_s": answer.first_token_s, "total_s": total_ms / 1000,
        "best_dense": best_similarity(answer.retrieval.chunks),  # what the relevance floor judges
    }  # fmt: skip
