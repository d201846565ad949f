"""A Qdrant server or cluster behind one qdrant-client-shaped object: node failover and cluster settings.

QDRANT_URL may name several nodes of a cluster (comma-separated) or one load-balanced URL. Any node
of a Qdrant cluster answers for every collection (it forwards to the shards' owners), so each call goes
to the node that answered last; a node that does not answer (refused, timed out, 502/503/504 from a
proxy) is skipped for the next, and after `failures` such calls in a row its own circuit opens for
`cooldown_s`; then the next call probes it first, and it is back in rotation if it answers. Only when
no node answers does the call fail, and the store's own circuit breaker (store.py) counts that.

The same place adds what a cluster needs to every call: shard number, replication factor and write
consistency factor when a collection is created; the read consistency on reads; the write ordering
on writes. Writes retried on another node are safe: every write the store makes is idempotent
(upserts and payload updates by id, deletes by id or filter).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from backend.adapters.circuit import CircuitBreaker

log = logging.getLogger(__name__)

_READS = frozenset({"query_points", "query_batch_points", "retrieve", "scroll"})
_WRITES = frozenset({"upsert", "delete", "set_payload"})


def unreachable(exc: BaseException) -> bool:
    """Did the call fail to get an answer from the server (as opposed to an answer that says no)?"""
    if isinstance(exc, ResponseHandlingException):  # connection refused, reset, timed out
        return True
    # A proxy or a restarting server in front of Qdrant.
    return isinstance(exc, UnexpectedResponse) and exc.status_code in (502, 503, 504)


@dataclass
class ClusterOptions:
    """What the service asks of a Qdrant cluster (docs/deployment.md, "Qdrant cluster")."""

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    read_consistency: int | str | None = None  # a number of replicas, or "majority" / "quorum" / "all"
    write_ordering: str | None = None  # "weak" / "medium" / "strong"

    def creation(self) -> dict[str, Any]:
        values = {"shard_number": self.shard_number, "replication_factor": self.replication_factor,
                  "write_consistency_factor": self.write_consistency_factor}  # fmt: skip
        return {k: v for k, v in values.items() if v is not None}

    def consistency(self) -> models.ReadConsistency | None:
        c = self.read_consistency
        if c is None:
            return None
        return c if isinstance(c, int) else models.ReadConsistencyType(c)

    def ordering(self) -> models.WriteOrdering | None:
        return models.WriteOrdering(self.write_ordering) if self.write_ordering else None


@dataclass
class Node:
    url: str
    client: QdrantClient
    breaker: CircuitBreaker


class QdrantNodes:
    """qdrant-client's calls, sent to one node of several, with the cluster options applied."""

    def __init__(
        self,
        urls: list[str],
        *,
        api_key: str | None,
        timeout_s: float,
        breaker_failures: int,
        breaker_cooldown_s: float,
        options: ClusterOptions | None = None,
    ) -> None:
        # qdrant-client types the timeout as int, but hands it to httpx, which takes seconds as float.
        self.nodes = [
            Node(url, QdrantClient(url=url, api_key=api_key, timeout=timeout_s),  # type: ignore[arg-type]
                 CircuitBreaker(breaker_failures, breaker_cooldown_s))
            for url in urls
        ]  # fmt: skip
        self.options = options or ClusterOptions()
        self._preferred = 0
        self._lock = threading.Lock()

    def _extra(self, method: str) -> dict[str, Any]:
        if method == "create_collection":
            return self.options.creation()
        if method in _READS and (consistency := self.options.consistency()) is not None:
            return {"consistency": consistency}
        if method in _WRITES and (ordering := self.options.ordering()) is not None:
            return {"ordering": ordering}
        return {}

    def _order(self) -> list[Node]:
        """The node that answered last first, then the others in turn; but a node whose cool-down is over
        goes before them all, so one call probes it (a failed probe moves on to the next node at once):
        without it, a node back from the dead would never be asked while another answers."""
        with self._lock:
            start = self._preferred
        rotated = self.nodes[start:] + self.nodes[:start]
        due = [n for n in rotated if n.breaker.state == "open" and n.breaker.retry_in_s() == 0]
        return due + [n for n in rotated if n not in due]

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        kwargs = {**self._extra(method), **kwargs}
        last: BaseException | None = None
        skipped = []
        for node in self._order():
            if not node.breaker.allow():
                skipped.append(node.url)
                continue
            try:
                result = getattr(node.client, method)(*args, **kwargs)
            except Exception as exc:
                if not unreachable(exc):
                    node.breaker.record_success()  # it answered, with a no
                    raise
                node.breaker.record_failure()
                log.warning("Qdrant node %s did not answer (%s)%s", node.url, type(exc).__name__,
                            "; trying the next node" if len(self.nodes) > 1 else "")  # fmt: skip
                last = exc
                continue
            except BaseException:
                node.breaker.abandon_probe()
                raise
            node.breaker.record_success()
            with self._lock:
                self._preferred = self.nodes.index(node)
            return result
        if last is not None:
            raise last
        raise ResponseHandlingException(ConnectionError(f"every Qdrant node is out of rotation: {', '.join(skipped)}"))

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def states(self) -> list[dict[str, object]]:
        return [{"url": n.url, "state": n.breaker.state} for n in self.nodes]

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()
