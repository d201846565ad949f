"""The CI-sized soak (60 s at concurrency 32 of mixed /ask, /search and uploads): no unexpected errors,
no memory or file-descriptor growth after warm-up. benchmarks/soak.py runs the 10-minute version."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import run_soak
from tests.conftest import LlamaServer


@pytest.mark.slow
def test_a_minute_of_mixed_load_leaves_no_errors_and_no_growth(llm_server: LlamaServer, tmp_path: Path) -> None:
    result = run_soak(60, 32, llm_server.base_url, tmp_path, drain_s=15)
    assert result.unexpected == [], result.unexpected[:5]
    assert all(result.requests.get(kind, 0) > 10 for kind in ("search", "ask", "upload")), result.requests
    assert set(result.statuses) == {"200"}, result.statuses
    assert result.rss_growth_after_warmup < 0.10, (result.rss_mb, result.rss_growth_after_warmup)
    assert result.fd_growth_after_warmup <= 4, result.fds
