"""Generate a conversational QA set: Russian and English chats and mail threads with planted facts.

    python -m cli.conversation_set --out bench-out/conversations-set.json [--seed 7] [--facts 24]
    python -m cli.eval bench-out/conversations-set.json --compare hybrid [--answers]

Each language gets a Telegram export, a WhatsApp chat, a plain chat log and an mbox of mail threads,
filled with everyday business chatter. Among it, facts are planted, each in one message: who proposed
something, on which day something was decided, which amount was agreed. Every question names its
language, its kind (who / when / amount), the file and message holding the fact, the answers that count,
and a filter a user could add without knowing the answer (the day for "who", the person for "when" and
"amount"). The set is the same for the same seed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from pathlib import Path
from typing import Any

FORMAT = "rag-conversation-set/1"

_PEOPLE = {
    "ru": [("Пётр", "Петров"), ("Анна", "Смирнова"), ("Игорь", "Кузнецов"), ("Ольга", "Васильева"),
           ("Дмитрий", "Соколов"), ("Мария", "Новикова"), ("Сергей", "Морозов"), ("Елена", "Волкова")],
    "en": [("Peter", "Walker"), ("Anna", "Hughes"), ("Igor", "Fletcher"), ("Olga", "Bennett"),
           ("David", "Harper"), ("Maria", "Lawson"), ("Sergey", "Mitchell"), ("Helen", "Porter")],
}  # fmt: skip
_PROJECTS = {
    "ru": ["Альфа", "Бета", "Гамма", "Дельта", "Омега", "Сириус", "Вега", "Орион", "Полярис", "Титан", "Атлас",
           "Зенит", "Меридиан", "Горизонт", "Импульс", "Кварц"],
    "en": ["Alpha", "Beta", "Gamma", "Delta", "Omega", "Sirius", "Vega", "Orion", "Polaris", "Titan", "Atlas",
           "Zenith", "Meridian", "Horizon", "Impulse", "Quartz"],
}  # fmt: skip
_FILLER = {
    "ru": ["Коллеги, напоминаю про планёрку в {time}.", "Ок, принято.", "Скинул отчёт в общую папку.",
           "Кто-нибудь видел письмо от бухгалтерии?", "Я сегодня работаю из дома.", "Спасибо, посмотрю вечером.",
           "Давайте обсудим это на встрече.", "Созвон переносится на полчаса.", "Поправил замечания, проверьте.",
           "У меня вопрос по договору, наберу позже.", "Согласен с предыдущим сообщением.", "Добавил задачу в трекер.",
           "Презентация почти готова, осталось два слайда.", "Сервер опять тормозит, разбираемся.",
           "Отпуск согласовал, с понедельника меня не будет.", "Напишите, если нужна помощь с тестами."],
    "en": ["Folks, a reminder about the stand-up at {time}.", "OK, got it.", "Put the report in the shared folder.",
           "Has anyone seen the email from accounting?", "I'm working from home today.", "Thanks, will look tonight.",
           "Let's discuss this at the meeting.", "The call moves by half an hour.", "Fixed the comments, please check.",
           "I have a question about the contract, will call later.", "Agree with the previous message.",
           "Added a task to the tracker.", "The deck is almost ready, two slides left.",
           "The server is slow again, we're on it.", "My leave is approved, I'm off from Monday.",
           "Let me know if you need help with the tests."],
}  # fmt: skip
_MONTHS_RU = ["января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
              "ноября", "декабря"]  # fmt: skip
_MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]  # fmt: skip


@dataclass
class _Msg:
    sender: tuple[str, str]
    when: datetime
    text: str
    id: str = ""


@dataclass
class _Conv:
    fmt: str  # telegram, whatsapp, chatlog, mbox
    title: str
    messages: list[_Msg] = field(default_factory=list)


_VENDORS = {"ru": ["Вектор", "Ростех-Сервис", "Арктика", "Север", "Континент", "Пульсар"],
            "en": ["Vector", "Northwind", "Arctic", "Contoso", "Pulsar", "Fabrikam"]}  # fmt: skip
# (the message that holds the fact, the question about it) per language and kind
_TEMPLATES = {
    "ru": {
        "who": ("Предлагаю перенести сдачу проекта «{project}» на {day} {month}.",
                "Кто предложил перенести сдачу проекта «{project}»?"),
        "when": ("Решили: по проекту «{project}» закупаем серверы у компании «{vendor}».",
                 "Какого числа решили закупать серверы для проекта «{project}»?"),
        "amount": ("Согласовали бюджет проекта «{project}»: {amount} рублей.",
                   "Какой бюджет согласовали для проекта «{project}»?"),
    },
    "en": {
        "who": ("I propose we move the {project} project deadline to {month} {day}.",
                "Who proposed moving the {project} project deadline?"),
        "when": ("Decided: for the {project} project we buy the servers from {vendor}.",
                 "On what date did we decide to buy the servers for the {project} project?"),
        "amount": ("The {project} project budget is agreed at ${amount}.",
                   "What budget was agreed for the {project} project?"),
    },
}  # fmt: skip


def _fact(lang: str, kind: str, project: str, rng: random.Random) -> tuple[str, str, list[str]]:
    """(message text, question, answers) for one planted fact; the caller fills who / when answers."""
    values: dict[str, object] = {"project": project}
    if kind == "who":
        values["day"] = rng.randint(3, 28)
        values["month"] = rng.choice((_MONTHS_RU if lang == "ru" else _MONTHS_EN)[3:6])
    elif kind == "when":
        values["vendor"] = rng.choice(_VENDORS[lang])
    else:
        amount = f"{rng.randint(12, 98) * 10}{' 000' if lang == 'ru' else ',000'}"
        values["amount"] = amount
    message, question = (template.format(**values) for template in _TEMPLATES[lang][kind])
    answers = [] if kind != "amount" else [amount] if lang == "ru" else [amount, amount.replace(",", "")]
    return message, question, answers


def generate(seed: int = 7, facts_per_language: int = 24) -> dict[str, Any]:
    rng = random.Random(seed)
    documents: list[dict[str, str]] = []
    questions: list[dict[str, Any]] = []
    for lang in ("ru", "en"):
        people = _PEOPLE[lang]
        titles = (["Проект: общий чат", "Закупки", "Команда разработки", "Переписка с подрядчиком"] if lang == "ru"
                  else ["Project: general", "Purchasing", "Dev team", "Contractor threads"])  # fmt: skip
        convs = [
            _Conv(fmt, title) for fmt, title in zip(("telegram", "whatsapp", "chatlog", "mbox"), titles, strict=True)
        ]
        start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        # 30 working days of chatter in every conversation
        for conv in convs:
            when = start
            for _ in range(30):
                for _ in range(rng.randint(1, 4)):
                    when += timedelta(minutes=rng.randint(3, 90))
                    text = rng.choice(_FILLER[lang]).format(time=f"{rng.randint(9, 17)}:{rng.choice(['00', '30'])}")
                    conv.messages.append(_Msg(rng.choice(people), when, text))
                when = when.replace(hour=9, minute=0) + timedelta(days=1)
        projects = rng.sample(_PROJECTS[lang], k=min(facts_per_language, len(_PROJECTS[lang])))
        kinds = ["who", "when", "amount"]
        for i in range(facts_per_language):
            kind = kinds[i % 3]
            project = projects[i % len(projects)]
            conv = convs[i % len(convs)]
            text, question, answers = _fact(lang, kind, project, rng)
            at = rng.randrange(len(conv.messages))
            sender = rng.choice(people)
            when = conv.messages[at].when + timedelta(minutes=1)
            msg = _Msg(sender, when, text)
            conv.messages.insert(at + 1, msg)
            if kind == "who":
                answers = [sender[1], f"{sender[0]} {sender[1]}"]
            elif kind == "when":
                month = (_MONTHS_RU if lang == "ru" else _MONTHS_EN)[when.month - 1]
                answers = [f"{when.day} {month}", f"{when:%d.%m.%Y}" if lang == "ru" else f"{month} {when.day}"]
                if lang == "en":  # "March 29th" is as right as "March 29"
                    th = {1: "st", 2: "nd", 3: "rd"}.get(when.day % 10 if when.day not in (11, 12, 13) else 0, "th")
                    answers += [f"{month} {when.day}{th}", f"{when.day}{th} of {month}"]
            day = when.replace(hour=0, minute=0)
            # what a user could add without knowing the answer: the day for "who proposed it (that day)?",
            # the person for "when did (they) decide?" and "what budget (did they agree)?"
            filters: dict[str, Any] = (
                {"sent_after": day.isoformat(), "sent_before": (day + timedelta(days=1)).isoformat()}
                if kind == "who" else {"participants": [sender[1]]}
            )  # fmt: skip
            # the same project named elsewhere, without the fact: retrieval must find the message that holds it
            mention = (f"По проекту «{project}» пока всё по плану." if lang == "ru"
                       else f"Nothing new on the {project} project so far.")  # fmt: skip
            for other in rng.sample(convs, 2):
                spot = rng.randrange(len(other.messages))
                at_time = other.messages[spot].when + timedelta(minutes=2)
                other.messages.insert(spot + 1, _Msg(rng.choice(people), at_time, mention))
            questions.append({"id": f"{lang}-{i:03d}", "lang": lang, "kind": kind, "question": question,
                              "answers": answers, "message": msg, "conv": conv, "filters": filters})  # fmt: skip
        for conv in convs:
            path, content = _render(conv, lang)
            documents.append({"path": path, "content": content})
    out_questions = []
    for q in questions:
        msg, conv = q.pop("message"), q.pop("conv")
        q["gold_path"] = _path(conv, _lang_of(q))
        q["gold_message"] = msg.id
        out_questions.append(q)
    return {"format": FORMAT, "seed": seed, "documents": documents, "questions": out_questions}


def _lang_of(q: dict[str, Any]) -> str:
    return str(q["lang"])


def _path(conv: _Conv, lang: str) -> str:
    ext = {"telegram": "json", "whatsapp": "txt", "chatlog": "txt", "mbox": "mbox"}[conv.fmt]
    return f"{lang}/{conv.fmt}.{ext}"


def _address(p: tuple[str, str], lang: str) -> str:
    return f"user{_PEOPLE[lang].index(p) + 1}@corp.example"


def _name(p: tuple[str, str]) -> str:
    return f"{p[0]} {p[1]}"


def _render(conv: _Conv, lang: str) -> tuple[str, str]:
    """The conversation in its export format; sets each message's id as the parser will see it."""
    if conv.fmt == "telegram":
        out = []
        for n, m in enumerate(conv.messages, start=1):
            m.id = str(n)
            out.append({"id": n, "type": "message", "date": m.when.strftime("%Y-%m-%dT%H:%M:%S"),
                        "date_unixtime": str(int(m.when.timestamp())), "from": _name(m.sender),
                        "from_id": f"user{_PEOPLE[lang].index(m.sender) + 1}", "text": m.text})  # fmt: skip
        body = {"name": conv.title, "type": "private_group", "id": 1, "messages": out}
        return _path(conv, lang), json.dumps(body, ensure_ascii=False, indent=1)
    if conv.fmt in ("whatsapp", "chatlog"):
        lines = []
        if conv.fmt == "whatsapp":
            notice = ("Сообщения и звонки защищены сквозным шифрованием." if lang == "ru"
                      else "Messages and calls are end-to-end encrypted.")  # fmt: skip
            lines.append(f"{conv.messages[0].when:%d.%m.%Y, %H:%M} - {notice}")
        for m in conv.messages:
            m.id = str(len(lines) + 1)  # the parser's id: the line the message starts on
            if conv.fmt == "whatsapp":
                lines.append(f"{m.when:%d.%m.%Y, %H:%M} - {_name(m.sender)}: {m.text}")
            else:
                lines.append(f"[{m.when:%d.%m.%Y %H:%M}] {_name(m.sender)}: {m.text}")
        return _path(conv, lang), "\n".join(lines) + "\n"
    # mbox: a thread per week, each message a reply to the one before
    parts = []
    subject = conv.title
    previous = None
    for n, m in enumerate(conv.messages, start=1):
        week = m.when.isocalendar().week
        thread_subject = f"{subject} ({'неделя' if lang == 'ru' else 'week'} {week})"
        m.id = f"m{n}@corp.example"
        headers = [
            f"From {_address(m.sender, lang)} {m.when:%a %b %d %H:%M:%S %Y}",
            f"From: {Header(_name(m.sender)).encode()} <{_address(m.sender, lang)}>",
            "To: team@corp.example",
            f"Subject: {Header(('Re: ' if previous and previous[1] == week else '') + thread_subject).encode()}",
            f"Date: {format_datetime(m.when)}",
            f"Message-ID: <{m.id}>",
        ]
        if previous and previous[1] == week:
            headers.append(f"In-Reply-To: <{previous[0]}>")
        headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit"]  # fmt: skip
        parts.append("\n".join(headers) + "\n\n" + m.text + "\n")
        previous = (m.id, week)
    return _path(conv, lang), "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.conversation_set", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench-out/conversations-set.json"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--facts", type=int, default=24, help="planted facts (questions) per language")
    args = p.parse_args(argv)
    data = generate(args.seed, args.facts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    sys.stdout.write(f"{len(data['documents'])} exports, {len(data['questions'])} questions -> {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
