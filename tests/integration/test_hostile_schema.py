"""Schemathesis against our OpenAPI document: generated requests, conforming and not, never get a 5xx,
and every 4xx carries a message. (Driven through Hypothesis directly: schemathesis' pytest plugin does
not run under pytest 9.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from backend.config import Settings
from backend.main import create_app
from tests.servers import ThreadedServer, free_port

log = logging.getLogger(__name__)
KEY = "schemathesis-admin-key-0123"
EXAMPLES = 40  # per operation and mode


def test_no_generated_request_gets_a_5xx(make_settings: Callable[..., Settings]) -> None:
    settings_ = make_settings(auth_disabled=False, api_keys=f"{KEY}=admin,read:*,write:*", rate_limit_per_minute=0,
                              llm_max_tokens=8)  # fmt: skip
    server = ThreadedServer(create_app(settings_), free_port())  # over a real socket, as clients see it
    failures: list[str] = []
    calls = {"total": 0}
    unsatisfiable: list[str] = []
    statuses: dict[int, int] = {}
    try:
        schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                def run(case: Any) -> None:
                    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {KEY}"}
                    response = case.call()
                    calls["total"] += 1
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code >= 500:
                        failures.append(f"{response.status_code} {case.as_curl_command()}\n{response.text[:300]}")
                    elif response.status_code >= 400 and response.status_code != 405:
                        try:
                            error = response.json()["error"]
                            ok = bool(error["code"]) and len(error["message"]) >= 10
                        except (ValueError, KeyError, TypeError):
                            ok = False
                        if not ok:
                            failures.append(f"{response.status_code} without a message: {case.as_curl_command()}")

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid, e.g. GET /health in negative mode
                    unsatisfiable.append(f"{operation.label} {mode.value}")
    finally:
        server.stop()
    log.info(
        "schemathesis: %d requests, statuses %s, skipped %s", calls["total"], sorted(statuses.items()), unsatisfiable
    )
    assert not failures, "\n\n".join(failures[:10])
    assert calls["total"] > 300
    assert len(unsatisfiable) <= 6, unsatisfiable  # only operations without parameters
