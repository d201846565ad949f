"""Every setting is documented, so docs/configuration.md cannot fall behind backend/config.py."""

from __future__ import annotations

from pathlib import Path

from backend.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text]
    assert missing == []
