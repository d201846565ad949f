"""What every conversation parser produces: messages with sender and time, grouped into chats or threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass
class Message:
    id: str  # unique inside its file: a Message-ID, a Telegram id, or a position
    sender: str  # display name, or the address when there is none
    sent_at: datetime | None  # aware; None when the export's date did not parse (reported)
    text: str  # the message's own words: quoted history and media placeholders removed
    sender_address: str | None = None  # mail address or messenger user id, where known
    recipients: list[str] = field(default_factory=list)  # To and Cc of a mail
    reply_to: str | None = None  # id of the message this one answers
    forwarded_from: str | None = None
    edited: bool = False
    subject: str | None = None  # mail only

    @property
    def timestamp(self) -> float | None:
        return self.sent_at.timestamp() if self.sent_at else None


@dataclass
class Conversation:
    kind: Literal["chat", "thread"]  # a messenger chat, or a mail thread
    title: str
    messages: list[Message]
    russian: bool | None = None  # the language its chunks write dates in; None: judged from its messages


@dataclass
class Attachment:
    """A file attached to a mail, indexed with the message it came with."""

    name: str
    message_id: str
    data: bytes


# A conversation with the attachments of its messages.
ConversationPart = tuple[Conversation, list[Attachment]]


@dataclass
class ConversationDocument:
    """An export's chats or threads: held in `conversations`, or (a mailbox, which may be hundreds of
    megabytes) read one thread at a time from `stream`, so that only one thread's text is in memory."""

    format: Literal["mbox", "eml", "telegram", "whatsapp", "chatlog"]
    title: str
    conversations: list[Conversation]
    attachments: list[Attachment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # per-message problems, reported with the file
    stream: Callable[[], Iterator[ConversationPart]] | None = None
    streamed_messages: int = 0  # messages `stream` will read (their headers were read already)

    @property
    def message_count(self) -> int:
        return self.streamed_messages if self.stream else sum(len(c.messages) for c in self.conversations)

    def parts(self) -> Iterator[ConversationPart]:
        """Each conversation with its messages' attachments, in order."""
        if self.stream is not None:
            yield from self.stream()
            return
        for conv in self.conversations:
            ids = {m.id for m in conv.messages}
            yield conv, [a for a in self.attachments if a.message_id in ids]
