"""The web page at /, end to end in headless Chromium (Debian's, driven by Playwright) against the real
app: uvicorn on a socket, API keys on, the real embedder, embedded Qdrant and llama.cpp. Screenshots of
each step go to test-artifacts/web/ (ARTIFACTS_DIR)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.main import create_app
from tests.conftest import missing
from tests.servers import ThreadedServer, free_port

playwright_sync = pytest.importorskip("playwright.sync_api")

KEY = "web-page-writer-0123456789"
KEYS = f"{KEY}=read:*,write:*"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "test-artifacts")) / "web"
# Without the background-networking flags Chromium keeps calling Google's hosts, which this network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def chromium() -> str:
    """Debian's chromium (`make browser`). Missing: skipped, except where REQUIRE_BROWSER=1 (make test)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("the web page test needs Debian's chromium: run `make browser`", "REQUIRE_BROWSER")
    return found


@pytest.fixture
def app_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = make_settings(auth_disabled=False, api_keys=KEYS, rate_limit_per_minute=0, llm_max_tokens=48)
    server = ThreadedServer(create_app(settings), free_port())
    yield server.base_url
    server.stop()


def open_page(app_url: str, locale: str) -> Iterator[object]:
    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900}, locale=locale)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(app_url)
        yield tab
        browser.close()
        assert errors == [], errors  # no JavaScript error on the page, at any step


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    yield from open_page(app_url, "en-US")


@pytest.fixture
def russian_page(app_url: str) -> Iterator[object]:
    yield from open_page(app_url, "ru-RU")


def test_upload_ask_stream_and_open_a_citation(page: object, tmp_path: Path) -> None:
    tab: playwright_sync.Page = page  # type: ignore[assignment]
    expect = playwright_sync.expect
    # Without a key the API refuses, and the page says why.
    expect(tab.locator("#notice")).to_contain_text("401")
    tab.fill("#key", KEY)
    tab.press("#key", "Tab")
    expect(tab.locator("#notice")).to_be_hidden()

    # Upload two files to a new space, with progress, and see each file's result.
    (tmp_path / "glimmer.md").write_text("# Glimmer pump\n\nThe Glimmer pump runs at a maximum pressure of 9 bar.\n")
    (tmp_path / "kotel.txt").write_text("Котельная на Садовой улице переведена на газ в марте.\n" * 200)
    tab.fill("#upload-space", "plant")
    tab.set_input_files("#files", [str(tmp_path / "glimmer.md"), str(tmp_path / "kotel.txt")])
    tab.click("#upload")
    results = tab.locator("#upload-results tbody tr")
    expect(results).to_have_count(2, timeout=60_000)
    expect(tab.locator("#upload-results")).to_contain_text("glimmer.md")
    assert sorted(results.locator("td:nth-child(2)").all_inner_texts()) == ["new", "new"]
    expect(tab.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(tab.locator("#upload-state")).to_contain_text("chunks written")
    tab.screenshot(path=str(ARTIFACTS / "1-upload.png"), full_page=True)

    # The new space is in the picker; ask, and watch the answer arrive in pieces.
    expect(tab.locator("#space")).to_have_value("plant")
    tab.evaluate("""() => { window.answerUpdates = 0;
        new MutationObserver(() => window.answerUpdates++).observe(
            document.getElementById('answer'), {childList: true, subtree: true, characterData: true}); }""")
    tab.fill("#question", "What is the maximum pressure of the Glimmer pump?")
    tab.click("#ask")
    expect(tab.locator("#sources li").first).to_contain_text("glimmer.md", timeout=60_000)
    expect(tab.locator("#meta")).to_contain_text("answered by openai", timeout=120_000)
    assert tab.evaluate("window.answerUpdates") >= 3  # streamed, not one block at the end
    assert tab.inner_text("#answer").strip()
    meta = tab.inner_text("#meta")
    assert all(part in meta for part in ("retrieval hybrid", "first token", "total"))
    tab.screenshot(path=str(ARTIFACTS / "2-answer.png"), full_page=True)

    # A citation opens its source chunk. SmolLM2 does not always cite, so the answer is also rendered
    # from a known text through the page's own renderer.
    if tab.locator("#answer a.cite").count() == 0:
        tab.evaluate("renderAnswer('The Glimmer pump holds at most 9 bar [1].')")
    tab.locator("#answer a.cite").first.click()
    expect(tab.locator("#source-view")).to_be_visible()
    number = tab.locator("#answer a.cite").first.inner_text()
    expect(tab.locator("#source-title")).to_contain_text(f"[{number}]")
    if number == "1":
        expect(tab.locator("#source-text")).to_contain_text("9 bar")
        expect(tab.locator("#source-where")).to_contain_text("glimmer.md")
    tab.screenshot(path=str(ARTIFACTS / "3-source.png"), full_page=True)

    # A source in the list opens too; text from documents is shown as text, never run as HTML.
    tab.click("#close-source")
    tab.locator("#sources li").last.click()
    expect(tab.locator("#source-view")).to_be_visible()


def test_markup_in_documents_and_answers_is_shown_as_text(page: object, tmp_path: Path) -> None:
    tab: playwright_sync.Page = page  # type: ignore[assignment]
    tab.fill("#key", KEY)
    tab.press("#key", "Tab")
    hostile = '# Notes\n\nThe valve <img src=x onerror="window.pwned=1"> closes at <b>40</b> degrees.\n'
    (tmp_path / "notes.md").write_text(hostile)
    tab.fill("#upload-space", "hostile")
    tab.set_input_files("#files", [str(tmp_path / "notes.md")])
    tab.click("#upload")
    playwright_sync.expect(tab.locator("#upload-results tbody tr")).to_have_count(1, timeout=60_000)
    tab.evaluate("""() => { sources = [{n: 1, path: 'notes.md', document: 'd', title: 'Notes', heading: null,
        page: null, chunk: 0, score: 0.5, text: '<img src=x onerror="window.pwned=1"> <b>40</b>'}];
        renderSources(new Set([1])); renderAnswer('<img src=x onerror="window.pwned=2"> [1]'); showSource(1); }""")
    tab.wait_for_timeout(300)
    assert tab.evaluate("window.pwned") is None
    assert tab.locator("#answer img, #source-text img, #sources img").count() == 0
    assert "<img" in tab.inner_text("#source-text") and "<img" in tab.inner_text("#answer")
    headers = tab.request.get(tab.url).headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_the_page_speaks_the_browsers_language_and_switches(russian_page: object) -> None:
    tab: playwright_sync.Page = russian_page  # type: ignore[assignment]
    expect = playwright_sync.expect
    expect(tab.locator("#ask")).to_have_text("Спросить")
    expect(tab.locator("#upload-heading")).to_have_text("Добавить документы")
    assert tab.evaluate("document.documentElement.lang") == "ru"
    assert "Задайте вопрос" in (tab.get_attribute("#question", "placeholder") or "")
    expect(tab.locator("#notice")).to_contain_text("Не удалось получить список пространств")  # no key yet
    # Numbers and dates in the reader's locale.
    tab.evaluate("""() => { sources = [{n: 1, path: 'протокол.md', document: 'd', title: 'Протокол', heading: null,
        page: 2, chunk: 0, score: 0.6123, modified_at: 1710496800, text: 'Петров предложил перенести срок.'}];
        renderSources(new Set([1])); showSource(1); }""")
    expect(tab.locator("#sources li")).to_have_text("протокол.md · с. 2 (оценка 0,612) - цитируется")
    expect(tab.locator("#source-where")).to_contain_text("15 мар. 2024")
    tab.screenshot(path=str(ARTIFACTS / "4-russian.png"), full_page=True)
    # The switch changes every text, and is remembered.
    tab.select_option("#lang", "en")
    expect(tab.locator("#ask")).to_have_text("Ask")
    assert tab.evaluate("document.documentElement.lang") == "en"
    tab.reload()
    expect(tab.locator("#ask")).to_have_text("Ask")
    expect(tab.locator("#lang")).to_have_value("en")


def test_answers_render_markdown_without_running_markup(russian_page: object) -> None:
    tab: playwright_sync.Page = russian_page  # type: ignore[assignment]
    tab.evaluate("""() => { sources = [{n: 1, path: 'a.md', document: 'd', title: 'A', heading: null, page: null,
        chunk: 0, score: 0.5, text: 'Срок — 20 мая.'}]; renderSources(new Set([1]));
        renderAnswer('**Итог:** срок перенесли на 20 мая [1].\\n\\n- первый пункт\\n- второй <b>пункт</b>\\n\\n'
                     + 'Команда: `make run`\\n\\n<img src=x onerror="window.pwned=3">'); }""")
    answer = tab.locator("#answer")
    assert answer.locator("strong").inner_text() == "Итог:"
    assert answer.locator("ul li").count() == 2 and answer.locator("code").inner_text() == "make run"
    assert answer.locator("b, img").count() == 0 and "<b>пункт</b>" in answer.inner_text()
    answer.locator("a.cite").click()
    playwright_sync.expect(tab.locator("#source-text")).to_have_text("Срок — 20 мая.")
    assert tab.evaluate("window.pwned") is None


def test_conversation_filters_and_who_wrote_when(russian_page: object, tmp_path: Path) -> None:
    tab: playwright_sync.Page = russian_page  # type: ignore[assignment]
    expect = playwright_sync.expect
    tab.fill("#key", KEY)
    tab.press("#key", "Tab")
    chat = tmp_path / "WhatsApp Chat with Стройка.txt"
    chat.write_text(
        "14.03.2024, 09:00 - Анна Смирнова: Бетон привезут в пятницу.\n"
        "15.03.2024, 10:02 - Пётр Петров: Предлагаю перенести заливку фундамента на понедельник.\n"
        "16.03.2024, 11:00 - Анна Смирнова: Фундамент зальём во вторник, бетон уже заказан.\n",
        encoding="utf-8",
    )
    tab.fill("#upload-space", "chats")
    tab.set_input_files("#files", [str(chat)])
    tab.click("#upload")
    expect(tab.locator("#upload-results tbody tr")).to_have_count(1, timeout=60_000)
    expect(tab.locator("#space")).to_have_value("chats")

    tab.locator("#filters summary").click()
    tab.fill("#f-participants", "Петров")
    tab.fill("#f-after", "2024-03-15")
    tab.fill("#f-before", "2024-03-15")
    tab.fill("#question", "Что предлагали насчёт фундамента?")
    tab.click("#ask")
    sources = tab.locator("#sources li")
    expect(sources.first).to_contain_text("Пётр Петров", timeout=60_000)
    expect(tab.locator("#meta")).to_contain_text("ответил", timeout=120_000)
    texts = sources.all_inner_texts()
    assert texts and all("Пётр Петров" in x and "Анна" not in x for x in texts), texts  # the filter held
    sources.first.click()
    expect(tab.locator("#source-text")).to_contain_text("[15 марта 2024, 10:02] Пётр Петров: Предлагаю")
    tab.screenshot(path=str(ARTIFACTS / "5-conversation-filters.png"), full_page=True)

    tab.click("#f-clear")
    tab.fill("#question", "Когда зальют фундамент?")
    tab.click("#ask")
    expect(tab.locator("#sources li").first).to_contain_text("Анна Смирнова", timeout=60_000)


def test_summaries_of_a_document_and_of_a_filter_with_progress(russian_page: object, tmp_path: Path) -> None:
    tab: playwright_sync.Page = russian_page  # type: ignore[assignment]
    expect = playwright_sync.expect
    tab.fill("#key", KEY)
    tab.press("#key", "Tab")
    minutes = tmp_path / "протокол.md"
    minutes.write_text("# Протокол совещания 15 марта\n\nРешили закупить насосы у компании «Вектор».\n\n"
                       "# Поручения\n\nАнна Смирнова готовит договор до 20 марта.\n", encoding="utf-8")  # fmt: skip
    tab.fill("#upload-space", "minutes")
    tab.set_input_files("#files", [str(minutes)])
    tab.click("#upload")
    expect(tab.locator("#upload-results tbody tr")).to_have_count(1, timeout=60_000)
    expect(tab.locator("#space")).to_have_value("minutes")

    tab.select_option("#style", "decisions")
    tab.locator(".summarize-document").click()  # the uploaded document's own summary
    expect(tab.locator("#meta")).to_contain_text("прочитано фрагментов: 2 из 2", timeout=120_000)  # two sections
    assert tab.locator("#answer").inner_text().strip()
    tab.screenshot(path=str(ARTIFACTS / "6-summary.png"), full_page=True)
    tab.locator(".summarize-document").click()
    expect(tab.locator("#meta")).to_contain_text("сохранённая сводка", timeout=60_000)  # stored, not rewritten

    tab.click("#summarize")  # no filters: the whole space
    expect(tab.locator("#meta")).to_contain_text("прочитано фрагментов", timeout=120_000)
    expect(tab.locator("#summarize")).to_have_text("Сводка")


def test_the_model_picker_offers_the_keys_models_and_the_answer_says_which(
    make_settings: Callable[..., Settings], llm_server: object, tmp_path: Path
) -> None:
    base_url = llm_server.base_url  # type: ignore[attr-defined]
    models = [{"name": "fast", "base_url": base_url, "role": "default"},
              {"name": "large", "base_url": base_url, "role": "large"}]  # fmt: skip
    limited = "web-page-fast-only-012345"
    settings = make_settings(auth_disabled=False, api_keys=f"{KEYS} {limited}=read:*,model:fast", llm_models=models,
                             rate_limit_per_minute=0, llm_max_tokens=32)  # fmt: skip
    server = ThreadedServer(create_app(settings), free_port())
    try:
        for tab_obj in open_page(server.base_url, "en-US"):
            tab: playwright_sync.Page = tab_obj  # type: ignore[assignment]
            expect = playwright_sync.expect
            tab.fill("#key", KEY)
            tab.press("#key", "Tab")
            expect(tab.locator("#model-picker")).to_be_visible()
            assert tab.locator("#model option").all_inner_texts() == ["fast (default)", "large"]
            expect(tab.locator("#model")).to_have_value("fast")
            (tmp_path / "glimmer.md").write_text("The Glimmer pump runs at a maximum pressure of 9 bar.\n")
            tab.fill("#upload-space", "plant")
            tab.set_input_files("#files", [str(tmp_path / "glimmer.md")])
            tab.click("#upload")
            expect(tab.locator("#upload-results tbody tr")).to_have_count(1, timeout=60_000)
            tab.select_option("#model", "large")
            tab.fill("#question", "What is the maximum pressure of the Glimmer pump?")
            tab.click("#ask")
            expect(tab.locator("#meta")).to_contain_text("answered by large: openai", timeout=120_000)
            tab.screenshot(path=str(ARTIFACTS / "6-model-picker.png"), full_page=True)
            # a key that may use one model only gets no choice (and its requests name none)
            tab.fill("#key", limited)
            tab.press("#key", "Tab")
            expect(tab.locator("#model-picker")).to_be_hidden()
            tab.click("#ask")
            expect(tab.locator("#meta")).to_contain_text("answered by fast: openai", timeout=120_000)
    finally:
        server.stop()
