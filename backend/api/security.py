"""Who is asking: API keys with per-space scopes, and a token bucket per key.

Keys are kept only as SHA-256 digests and compared in constant time; neither keys nor digests are ever
logged. A key may read and/or write named spaces (or `*`), and `admin` may delete documents and spaces.
A key with `model:NAME` scopes may use those named models only (LLM_MODELS); without any, every model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import SPACE_RE, ConfigError, Settings

_SCOPE_HELP = "scopes are read:SPACE, write:SPACE (SPACE a space name or *), model:NAME (of LLM_MODELS) and admin"


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a named key with its scopes, or everyone when auth is disabled."""

    name: str
    read: frozenset[str]
    write: frozenset[str]
    admin: bool
    models: frozenset[str] = frozenset({"*"})  # named models it may use

    def can_use(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def can_read(self, space: str) -> bool:
        return "*" in self.read or space in self.read

    def can_write(self, space: str) -> bool:
        return "*" in self.write or space in self.write


ANONYMOUS = Principal("anonymous", frozenset({"*"}), frozenset({"*"}), admin=True)


@dataclass(frozen=True)
class _Key:
    digest: bytes
    principal: Principal


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _principal(
    name: str, read: list[str], write: list[str], admin: bool, where: str, models: list[str] | None = None
) -> Principal:
    for space in (*read, *write):
        if space != "*" and not SPACE_RE.match(space):
            raise ConfigError(f"{where}: {space!r} is not a space name ({_SCOPE_HELP})")
    if not (read or write or admin):
        raise ConfigError(f"{where}: the key has no scope; {_SCOPE_HELP}")
    return Principal(name, frozenset(read), frozenset(write), admin, frozenset(models or ["*"]))


def _parse_inline(text: str) -> list[_Key]:
    keys = []
    for index, entry in enumerate(text.split(), 1):
        where = f"API_KEYS entry {index}"  # never the key itself: it may end up in a log
        key, sep, scopes = entry.partition("=")
        if not sep or len(key) < 16:
            raise ConfigError(f"{where}: write KEY=SCOPES with a key of at least 16 characters; {_SCOPE_HELP}")
        read: list[str] = []
        write: list[str] = []
        models: list[str] = []
        admin = False
        for scope in filter(None, scopes.split(",")):
            kind, _, space = scope.partition(":")
            if kind == "admin" and not space:
                admin = True
            elif kind in ("read", "write", "model") and space:
                {"read": read, "write": write, "model": models}[kind].append(space)
            else:
                raise ConfigError(f"{where}: unknown scope {scope!r}; {_SCOPE_HELP}")
        keys.append(_Key(_digest(key), _principal(f"key{index}", read, write, admin, where, models)))
    return keys


def _parse_file(path: Path) -> list[_Key]:
    try:
        entries: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"API_KEYS_FILE {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"API_KEYS_FILE {path} is not a readable JSON list: {exc}") from None
    if not isinstance(entries, list):
        raise ConfigError(f"API_KEYS_FILE {path} must hold a JSON list of keys")
    keys = []
    for index, entry in enumerate(entries, 1):
        where = f"API_KEYS_FILE entry {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: each key is an object {{name, key or key_sha256, read, write, admin}}")
        name = str(entry.get("name") or f"file{index}")
        if "key_sha256" in entry:
            try:
                digest = bytes.fromhex(str(entry["key_sha256"]))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ConfigError(f"{where} ({name}): key_sha256 must be 64 hex digits")
        elif isinstance(entry.get("key"), str) and len(entry["key"]) >= 16:
            digest = _digest(entry["key"])
        else:
            raise ConfigError(f"{where} ({name}): give key (at least 16 characters) or key_sha256")
        read, write = entry.get("read", []), entry.get("write", [])
        if not (isinstance(read, list) and isinstance(write, list)):
            raise ConfigError(f"{where} ({name}): read and write are lists of space names")
        admin = entry.get("admin", False) is True
        models = entry.get("models", [])
        if not isinstance(models, list):
            raise ConfigError(f"{where} ({name}): models is a list of model names (LLM_MODELS)")
        keys.append(_Key(digest, _principal(name, [str(s) for s in read], [str(s) for s in write], admin, where,
                                            [str(m) for m in models])))  # fmt: skip
    return keys


class KeyRing:
    def __init__(self, keys: list[_Key], disabled: bool) -> None:
        self._keys = keys
        self.disabled = disabled

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys = _parse_inline(settings.api_keys.get_secret_value()) if settings.api_keys else []
        if settings.api_keys_file:
            keys += _parse_file(settings.api_keys_file)
        known = {spec.name for spec in settings.model_specs}
        for key in keys:
            unknown = sorted(key.principal.models - known - {"*"})
            if unknown:
                raise ConfigError(f"API key {key.principal.name} names models {unknown} that LLM_MODELS does not "
                                  f"define; the models are {sorted(known)}")  # fmt: skip
        if len({k.digest for k in keys}) != len(keys):
            raise ConfigError("the same API key appears twice (API_KEYS / API_KEYS_FILE); give each key once")
        if not keys and not settings.auth_disabled:
            raise ConfigError(
                "no API keys: set API_KEYS or API_KEYS_FILE (docs/security.md), or AUTH_DISABLED=true to serve "
                "without authentication"
            )
        return cls(keys, settings.auth_disabled)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, token: str) -> Principal | None:
        """The key's principal, or None. Every key is compared (constant time), so timing tells nothing."""
        digest = _digest(token)
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key.principal
        return found


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at `per_minute`. Idle buckets are
    forgotten beyond `max_callers`, so unauthenticated callers (by address) cannot grow it without bound."""

    def __init__(self, per_minute: float, burst: int, max_callers: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, caller: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it may (for Retry-After)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
