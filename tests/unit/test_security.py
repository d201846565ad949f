"""API keys (parsing, scopes, constant-time lookup) and the per-key token bucket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from backend.api.security import KeyRing, RateLimiter
from backend.config import ConfigError, Settings

READER = "reader-key-0123456789"
ADMIN = "admin-key-0123456789ab"


def ring(**values: object) -> KeyRing:
    return KeyRing.from_settings(Settings(_env_file=None, **values))  # type: ignore[arg-type]


def test_inline_keys_carry_their_scopes() -> None:
    keys = ring(api_keys=f"{READER}=read:docs,read:mail,write:docs  {ADMIN}=admin,read:*")
    reader, admin = keys.authenticate(READER), keys.authenticate(ADMIN)
    assert reader is not None and admin is not None
    assert reader.can_read("docs") and reader.can_read("mail") and not reader.can_read("hr")
    assert reader.can_write("docs") and not reader.can_write("mail") and not reader.admin
    assert admin.admin and admin.can_read("anything") and not admin.can_write("docs")
    assert keys.authenticate("not-a-key-at-all-000") is None
    assert keys.authenticate(READER + " ") is None


def test_a_keys_file_may_hold_only_digests(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([
        {"name": "alice", "key_sha256": hashlib.sha256(READER.encode()).hexdigest(), "read": ["docs"]},
        {"name": "ops", "key": ADMIN, "admin": True},
    ]))  # fmt: skip
    keys = ring(api_keys_file=path)
    alice = keys.authenticate(READER)
    assert alice is not None and alice.name == "alice" and alice.can_read("docs")
    ops = keys.authenticate(ADMIN)
    assert ops is not None and ops.admin and not ops.can_read("docs")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "no API keys: set API_KEYS or API_KEYS_FILE"),
        ({"api_keys": "short=read:*"}, "API_KEYS entry 1: write KEY=SCOPES with a key of at least 16"),
        ({"api_keys": f"{READER}=read"}, "unknown scope 'read'"),
        ({"api_keys": f"{READER}=delete:docs"}, "unknown scope 'delete:docs'"),
        ({"api_keys": f"{READER}=read:Not_A_Space"}, "'Not_A_Space' is not a space name"),
        ({"api_keys": f"{READER}="}, "the key has no scope"),
        ({"api_keys": f"{READER}=admin {READER}=read:*"}, "the same API key appears twice"),
        ({"api_keys_file": Path("/nonexistent/keys.json")}, "does not exist"),
    ],
)
def test_bad_key_settings_stop_start_up_with_a_message_that_never_shows_the_key(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        ring(**values)
    assert READER not in str(caught.value)


def test_a_malformed_keys_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"name": "bob", "key_sha256": "abc", "read": ["docs"]}]))
    with pytest.raises(ConfigError, match=r"entry 1 \(bob\): key_sha256 must be 64 hex digits"):
        ring(api_keys_file=path)
    path.write_text("{broken")
    with pytest.raises(ConfigError, match="not a readable JSON list"):
        ring(api_keys_file=path)


def test_disabled_auth_needs_no_keys() -> None:
    keys = ring(auth_disabled=True)
    assert keys.disabled and len(keys) == 0


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    assert [limiter.acquire("a", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a", now=100.0)
    assert wait == pytest.approx(1.0) and RateLimiter.retry_after(wait) == "1"
    assert limiter.acquire("b", now=100.0) == 0.0  # another caller has its own bucket
    assert limiter.acquire("a", now=101.01) == 0.0  # one token refilled after a second
    assert limiter.acquire("a", now=101.02) > 0


def test_the_limiter_forgets_idle_callers_beyond_its_bound() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, max_callers=100)
    for i in range(1000):
        limiter.acquire(f"address:{i}", now=0.0)
    assert len(limiter._buckets) == 100
    assert RateLimiter(per_minute=0, burst=1).acquire("x") == 0.0  # 0 = no limit
