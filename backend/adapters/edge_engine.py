"""Qdrant Edge (Qdrant's own Rust engine, in-process) behind the part of qdrant-client's API the store uses.

`VectorStore` speaks qdrant-client to a Qdrant server; in embedded mode it speaks the same calls to this
class, so both paths share every line of the store's logic (schemas, migrations, the registry, hybrid
queries) and differ only below it. Arguments and results are qdrant-client's own models, so the Qdrant
REST stand-in of the tests can serve from here too.

On disk, under the store folder (`QDRANT_PATH`):
  `shards/{collection}/`            one Edge shard per collection (its own WAL and segments)
  `shards/{collection}/collection.json`  what qdrant-client's collection info reports: vector
                                    parameters and the metadata the store keeps there, and the newest
                                    engine version that opened the shard (an older one refuses it by
                                    name). Written last when a collection is created (a folder without
                                    it is a creation that did not finish and is removed), replaced
                                    atomically.
  `edge.lock`                       held (flock) while a process has the folder open: one process
                                    at a time, like the server's own storage.
  `builds/{collection}.copy`        a copy of a shard whose search index a process of its own is
                                    building (`begin_build` / `finish_build`); `.old` the shard it
                                    replaced, for the moment of the swap. Whatever a crash leaves
                                    there is settled when the folder is opened next.

Edge shards are safe to query from several threads; creating and dropping collections is serialised
here. An update is in the shard's write-ahead log when `update` returns, so a process killed at any
moment loses nothing it was told was written; `close` flushes the segments.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from qdrant_client.http import models  # the REST models (qdrant_client.models shadows some)

log = logging.getLogger(__name__)
SHARDS = "shards"
BUILDS = "builds"
ENGINE = "qdrant-edge-py"
ENGINE_VERSION = importlib.metadata.version(ENGINE)
INFO_FILE = "collection.json"
LOCK_FILE = "edge.lock"
# A registry collection has no vectors, but an Edge shard needs one kind: an unused sparse one.
_NO_VECTORS = "_none"
_DISTANCE = {
    models.Distance.COSINE: edge.Distance.Cosine,
    models.Distance.DOT: edge.Distance.Dot,
    models.Distance.EUCLID: edge.Distance.Euclid,
    models.Distance.MANHATTAN: edge.Distance.Manhattan,
}
_INDEX = {
    models.PayloadSchemaType.KEYWORD: edge.PayloadSchemaType.Keyword,
    models.PayloadSchemaType.TEXT: edge.PayloadSchemaType.Text,
    models.PayloadSchemaType.FLOAT: edge.PayloadSchemaType.Float,
    models.PayloadSchemaType.INTEGER: edge.PayloadSchemaType.Integer,
    models.PayloadSchemaType.BOOL: edge.PayloadSchemaType.Bool,
    models.PayloadSchemaType.UUID: edge.PayloadSchemaType.Uuid,
}


class EdgeFolderLockedError(RuntimeError):
    """Another process holds the store folder."""


class EdgeShardError(RuntimeError):
    """A shard folder cannot be opened: corrupt, half-written, or written by a newer engine."""


_RECREATE = "python -m cli.index_cli --dir <folder> --space <space> --recreate"
_REINDEX = (
    "If a newer version of this service wrote it, run that version again. Otherwise it is damaged (a disk that "
    f"filled up, a machine that crashed): re-index its space from the documents, which removes it first: {_RECREATE}"
)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, as an OSError or as the text of an engine error (Edge reports "os error 28")."""
    text = str(exc)
    return getattr(exc, "errno", None) == 28 or "No space left on device" in text or "os error 28" in text


def is_local_mode_folder(path: Path) -> bool:
    """Does `path` hold data of qdrant-client's local mode (the embedded store before Qdrant Edge)?"""
    return (path / "collection").is_dir() and any((path / "collection").iterdir())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "0.10.1" -> (0, 10, 1); a beta suffix is ignored."""
    out = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        out.append(int(digits.group()))
        if digits.end() < len(part):  # "0b1": the release ends here
            break
    return tuple(out)


def _point_id(value: Any) -> str:
    return str(value)


def _edge_id(value: Any) -> Any:
    """qdrant-client ids are ints or UUID strings; Edge takes the same and parses a UUID string itself, by
    the same rules as `uuid.UUID` and in two thirds of the time (a hybrid search names a hundred ids)."""
    return value if isinstance(value, int | str) else str(value)


# The fields of every models.ScoredPoint the engine answers with, all set (see _scored_point).
_SCORED_FIELDS = frozenset(("id", "version", "score", "payload", "vector", "shard_key", "order_value"))


def _scored_point(p: Any, with_payload: Any) -> models.ScoredPoint:
    """One of the engine's results as qdrant-client's ScoredPoint, built as `model_construct` builds one
    but without its per-field work (resolving each default), which was half of the conversion's time: 4.8
    -> 2.6 us a point, ~150 points a hybrid search. The engine's own types need no validation; a test
    (tests/integration/test_edge_store.py) checks the result against a validated ScoredPoint, should
    pydantic change how it keeps a model."""
    point = object.__new__(models.ScoredPoint)
    values = {"id": _point_id(p.id), "version": p.version, "score": float(p.score),
              "payload": p.payload if with_payload else None, "vector": _vector_out(p.vector),
              "shard_key": None, "order_value": None}  # fmt: skip
    object.__setattr__(point, "__dict__", values)
    object.__setattr__(point, "__pydantic_fields_set__", set(_SCORED_FIELDS))
    object.__setattr__(point, "__pydantic_extra__", None)
    object.__setattr__(point, "__pydantic_private__", None)
    return point


def _sparse(v: models.SparseVector) -> edge.SparseVector:
    return edge.SparseVector(list(v.indices), list(v.values))


def _vector_in(vector: Any) -> Any:
    """A point's vector(s) from qdrant-client's shapes to Edge's."""
    if isinstance(vector, dict):
        return {name: _sparse(v) if isinstance(v, models.SparseVector) else list(v) for name, v in vector.items()}
    return list(vector)


def _vector_out(vector: Any) -> Any:
    if vector is None:
        return None
    if isinstance(vector, dict):
        out: dict[str, Any] = {}
        for name, v in vector.items():
            if name == _NO_VECTORS:
                continue
            if isinstance(v, edge.SparseVector):
                out[name] = models.SparseVector(indices=list(v.indices), values=list(v.values))
            else:
                out[name] = list(v)
        return out
    return list(vector)


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return _filter(c)
    if isinstance(c, models.HasIdCondition):
        return edge.HasIdCondition({_edge_id(i) for i in c.has_id})
    if not isinstance(c, models.FieldCondition):
        raise ValueError(f"filter condition {type(c).__name__} is not supported by the embedded engine")
    match: Any = None
    if isinstance(c.match, models.MatchValue):
        match = edge.MatchValue(c.match.value)
    elif isinstance(c.match, models.MatchAny):
        match = edge.MatchAny(list(c.match.any))  # type: ignore[arg-type]
    elif isinstance(c.match, models.MatchText):
        match = edge.MatchText(c.match.text)
    elif isinstance(c.match, models.MatchExcept):
        match = edge.MatchExcept(list(c.match.except_))  # type: ignore[arg-type]
    elif c.match is not None:
        raise ValueError(f"match {type(c.match).__name__} is not supported by the embedded engine")
    rng: Any = None
    if isinstance(c.range, models.Range):
        rng = edge.RangeFloat(gte=c.range.gte, gt=c.range.gt, lte=c.range.lte, lt=c.range.lt)
    elif c.range is not None:
        raise ValueError(f"range {type(c.range).__name__} is not supported by the embedded engine")
    return edge.FieldCondition(key=c.key, match=match, range=rng)


def _conditions(cs: Any) -> list[Any] | None:
    if cs is None:
        return None
    return [_condition(c) for c in (cs if isinstance(cs, list) else [cs])]


def _filter(f: models.Filter | None) -> edge.Filter | None:
    if f is None:
        return None
    return edge.Filter(must=_conditions(f.must), should=_conditions(f.should), must_not=_conditions(f.must_not))


def _dense_params(v: models.VectorParams) -> edge.EdgeVectorParams:
    quantization = None
    if isinstance(v.quantization_config, models.ScalarQuantization):
        q = v.quantization_config.scalar
        quantization = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=q.quantile,
                                                     always_ram=q.always_ram)  # fmt: skip
    elif v.quantization_config is not None:
        raise ValueError(f"{type(v.quantization_config).__name__} is not supported by the embedded engine")
    multi = edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim) if v.multivector_config is not None else None
    hnsw = None
    if (h := v.hnsw_config) is not None:  # m 0: no graph, for a vector only ever scored on points named by id
        hnsw = edge.HnswIndexConfig(m=16 if h.m is None else h.m, ef_construct=h.ef_construct or 100,
                                    full_scan_threshold=h.full_scan_threshold or 10000)  # fmt: skip
    datatype = edge.VectorStorageDatatype.Float16 if v.datatype == models.Datatype.FLOAT16 else None
    return edge.EdgeVectorParams(size=v.size, distance=_DISTANCE[v.distance], quantization_config=quantization,
                                 multivector_config=multi, hnsw_config=hnsw, datatype=datatype)  # fmt: skip


def _shard_config(vectors: Any, sparse_vectors: dict[str, Any] | None) -> edge.EdgeConfig:
    """A shard's configuration from qdrant-client's vector parameters (as given, or as collection.json keeps
    them). Payloads are read through the page cache, warmed when the shard opens (`Memory.Cached`). With
    the engine's default they stay on disk until read, and did not stay cached from one process to the
    next: the first read of each chunk's payload after a start took 80 us (5 chunks an answer: 0.4 ms,
    as long as the dense search; docs/performance.md). Cached, they cost their size in reclaimable page
    cache: 41 MB at 100k chunks."""
    dense: Any = None
    if isinstance(vectors, dict) and "size" in vectors:  # collection.json's dump of one unnamed VectorParams
        vectors = models.VectorParams.model_validate(vectors)
    if isinstance(vectors, models.VectorParams):
        dense = _dense_params(vectors)
    elif vectors:
        dense = {n: _dense_params(models.VectorParams.model_validate(v)) for n, v in vectors.items()}
    sparse = {}
    for n, p in (sparse_vectors or {}).items():
        modifier = (p.get("modifier") if isinstance(p, dict) else p.modifier) or None
        sparse[n] = edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf if modifier == models.Modifier.IDF else None)
    if not dense and not sparse:
        sparse = {_NO_VECTORS: edge.EdgeSparseVectorParams()}
    return edge.EdgeConfig(vectors=dense or None, sparse_vectors=sparse, payload_memory=edge.Memory.Cached)


def _search_params(p: models.SearchParams | None) -> edge.SearchParams | None:
    if p is None:
        return None
    q = p.quantization
    return edge.SearchParams(
        hnsw_ef=p.hnsw_ef,
        exact=bool(p.exact),
        quantization=edge.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore,
                                                   oversampling=q.oversampling) if q else None,
    )  # fmt: skip


def _query(query: Any, using: str | None) -> Any:
    """One scoring query from qdrant-client's shapes (vector, NearestQuery, FusionQuery) to Edge's."""
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    if isinstance(query, models.FusionQuery):
        return edge.Fusion.Rrf(k=60) if query.fusion == models.Fusion.RRF else edge.Fusion.Dbsf()
    if isinstance(query, models.RrfQuery):
        return edge.Fusion.Rrf(k=query.rrf.k or 60, weights=query.rrf.weights)
    if isinstance(query, models.SparseVector):
        return edge.Query.Nearest(_sparse(query), using=using)
    if isinstance(query, list) and query and isinstance(query[0], int | float):  # not a multi-vector
        return edge.Query.Nearest(query, using=using or "")  # the engine checks every element itself
    if isinstance(query, list) and query and isinstance(query[0], list):  # a multi-vector (MaxSim)
        return edge.Query.Nearest(query, using=using or "")
    raise ValueError(f"query {type(query).__name__} is not supported by the embedded engine")


def _prefetch(p: models.Prefetch) -> edge.Prefetch:
    nested = p.prefetch if isinstance(p.prefetch, list) else ([p.prefetch] if p.prefetch else [])
    return edge.Prefetch(
        limit=p.limit or 10,
        query=_query(p.query, p.using) if p.query is not None else None,
        prefetches=[_prefetch(n) for n in nested] or None,
        filter=_filter(p.filter),
        score_threshold=p.score_threshold,
        params=_search_params(p.params),
    )


def _with_payload(with_payload: Any) -> bool | list[str]:
    if isinstance(with_payload, list):
        return [str(k) for k in with_payload]
    return bool(with_payload)


def _with_vector(with_vectors: Any) -> bool | list[str]:
    if isinstance(with_vectors, list):
        return [str(v) for v in with_vectors]
    return bool(with_vectors)


class _Collection:
    """An open shard. Every call holds `use()`; replacing the shard (an index build finishing) holds
    `exclusive()`, which waits for the calls in progress and holds new ones back for the swap."""

    def __init__(self, folder: Path, shard: edge.EdgeShard, info: dict[str, Any]) -> None:
        self.folder = folder
        self.shard = shard
        self.info = info
        self.written = 0  # points upserted since the index was last built (by this process)
        # While a copy is being indexed elsewhere: every update made since the copy, replayed onto it.
        self.pending: list[Any] | None = None
        self.write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._users = 0
        self._swapping = False

    @contextmanager
    def use(self) -> Iterator[edge.EdgeShard]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._users += 1
            shard = self.shard
        try:
            yield shard
        finally:
            with self._cond:
                self._users -= 1
                if not self._users:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._swapping = True
            while self._users:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()

    def update(self, op: Any, points: int = 0) -> None:
        with self.write_lock, self.use() as shard:
            shard.update(op)
            self.written += points
            if self.pending is not None:
                self.pending.append(op)


class EdgeEngine:
    """A store folder of Edge shards, one per collection, answering qdrant-client's calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._root = path / SHARDS
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise EdgeFolderLockedError(f"the store folder {path} is open in another process") from exc
        self._open: dict[str, _Collection] = {}
        self._guard = threading.RLock()  # create / drop / open / swap; queries run outside it
        self._closed = False
        self._settle_builds()

    # --- collections -------------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid collection name {name!r}")
        return self._root / name

    def _get(self, name: str) -> _Collection:
        with self._guard:
            col = self._open.get(name)
            if col is not None:
                return col
            folder = self._folder(name)
            info_path = folder / INFO_FILE
            if not info_path.is_file():
                raise ValueError(f"Collection {name} not found")
            try:
                info = json.loads(info_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise EdgeShardError(f"the shard folder {folder} cannot be opened: its {INFO_FILE} is unreadable "
                                     f"({exc}). {_REINDEX}") from exc  # fmt: skip
            wrote = str(info.get("engine", ""))
            if wrote and _release(wrote) > _release(ENGINE_VERSION):
                # Its files may be in a format this engine misreads: refused before the engine sees them.
                raise EdgeShardError(
                    f"the shard folder {folder} was last opened by a newer engine ({ENGINE} {wrote}) than this "
                    f"service runs ({ENGINE} {ENGINE_VERSION}): run the newer version of the service again (its "
                    f"data stays as it is), or re-index this space with this version, which removes it first: "
                    f"{_RECREATE}"
                )
            try:
                # With the configuration as this version creates shards: a shard made before keeps its
                # segments as they are until its next index build, which rewrites them to match.
                config = _shard_config(info.get("vectors"), info.get("sparse_vectors"))
                shard = edge.EdgeShard.load(str(folder), config)
            except Exception as exc:
                if is_disk_full(exc):
                    raise EdgeShardError(
                        f"the shard folder {folder} cannot be opened: the disk is full ({exc}); opening replays "
                        "its write-ahead log, which needs space. Nothing is lost: free space on that disk and "
                        "start again."
                    ) from exc
                raise EdgeShardError(f"the shard folder {folder} cannot be opened ({exc}). {_REINDEX}") from exc
            if wrote != ENGINE_VERSION:  # from here on, an older engine must not take it for its own
                info["engine"] = ENGINE_VERSION
                try:
                    _write_atomically(info_path, info)
                except OSError as exc:  # a full disk: searches still work; the mark is written at the next open
                    log.warning("could not record the engine version in %s: %s", info_path, exc)
            col = _Collection(folder, shard, info)
            self._open[name] = col
            return col

    def collection_exists(self, name: str) -> bool:
        with self._guard:
            return name in self._open or (self._folder(name) / INFO_FILE).is_file()

    def get_collections(self) -> models.CollectionsResponse:
        names = sorted(p.name for p in self._root.iterdir() if (p / INFO_FILE).is_file())
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in names])

    def create_collection(
        self,
        collection_name: str,
        vectors_config: models.VectorParams | dict[str, models.VectorParams] | None = None,
        sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        with self._guard:
            if self.collection_exists(collection_name):
                raise ValueError(f"Wrong input: Collection `{collection_name}` already exists!")
            folder = self._folder(collection_name)
            if folder.exists():  # a creation that did not finish: it holds nothing anybody was told of
                shutil.rmtree(folder)
            shard = edge.EdgeShard.create(str(folder), _shard_config(vectors_config, sparse_vectors_config))
            info = {
                "vectors": (
                    vectors_config.model_dump(mode="json")
                    if isinstance(vectors_config, models.VectorParams)
                    else {n: v.model_dump(mode="json") for n, v in (vectors_config or {}).items()}
                ),
                "sparse_vectors": {n: p.model_dump(mode="json") for n, p in (sparse_vectors_config or {}).items()},
                "metadata": metadata or {},
                "payload_schema": {},
                "engine": ENGINE_VERSION,
            }
            _write_atomically(folder / INFO_FILE, info)
            self._open[collection_name] = _Collection(folder, shard, info)
            return True

    def update_collection(
        self,
        collection_name: str,
        metadata: dict[str, Any] | None = None,
        vectors_config: dict[str, models.VectorParamsDiff] | None = None,
        **_: Any,
    ) -> bool:
        """Metadata, and of a named dense vector its quantization (all of a vector the embedded store can
        change): the shard is opened again with it at once, and its segments follow at its next index
        build (`optimize`, or a build on a copy), which writes or drops the 8-bit copy."""
        with self._guard:
            col = self._get(collection_name)
            vectors = col.info.get("vectors") or {}
            quantization: dict[str, Any] = {}  # checked first, so a refusal leaves everything as it was
            for name, diff in (vectors_config or {}).items():
                if "size" in vectors or name not in vectors:
                    raise ValueError(f"Wrong input: Collection `{collection_name}` has no vector named {name!r}")
                q = diff.quantization_config
                if isinstance(q, models.ScalarQuantization):
                    quantization[name] = q.model_dump(mode="json")
                elif q == models.Disabled.DISABLED:
                    quantization[name] = None
                elif q is not None:
                    raise ValueError(f"{type(q).__name__} is not supported by the embedded engine")
            if quantization and col.pending is not None:  # the copy being indexed would bring the old one back
                raise ValueError(f"Collection `{collection_name}`: an index build is under way; change its vectors "
                                 "once it has finished")  # fmt: skip
            if metadata:
                col.info["metadata"] = {**col.info.get("metadata", {}), **metadata}
            for name, q in quantization.items():
                vectors[name]["quantization_config"] = q
            changed = bool(quantization)
            if metadata or changed:
                _write_atomically(col.folder / INFO_FILE, col.info)
            if changed:
                with col.exclusive():
                    col.shard.close()
                    config = _shard_config(vectors, col.info.get("sparse_vectors"))
                    col.shard = edge.EdgeShard.load(str(col.folder), config)
            return True

    def delete_collection(self, collection_name: str) -> bool:
        with self._guard:
            if not self.collection_exists(collection_name):
                return False
            col = self._open.pop(collection_name, None)
            if col is not None:
                with col.exclusive():
                    col.shard.close()
            folder = self._folder(collection_name)
            # First the marker goes (the collection is gone from here on, even if the removal below is cut
            # short), then the files.
            (folder / INFO_FILE).unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return True

    def get_collection(self, collection_name: str) -> models.CollectionInfo:
        col = self._get(collection_name)
        raw = col.info.get("vectors")
        vectors: Any = (
            models.VectorParams.model_validate(raw)
            if isinstance(raw, dict) and "size" in raw
            else {n: models.VectorParams.model_validate(v) for n, v in (raw or {}).items()}
        )
        sparse = {n: models.SparseVectorParams.model_validate(p) for n, p in col.info.get("sparse_vectors", {}).items()}
        with col.use() as shard:
            count = shard.count(edge.CountRequest(exact=True))
            shard_info = shard.info()
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=count,
            indexed_vectors_count=shard_info.indexed_vectors_count,
            segments_count=shard_info.segments_count,
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=vectors, sparse_vectors=sparse or None),
                hnsw_config=models.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
                optimizer_config=models.OptimizersConfig(
                    deleted_threshold=0.2, vacuum_min_vector_number=1000, default_segment_number=0, flush_interval_sec=5
                ),
                wal_config=models.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
                metadata=col.info.get("metadata") or None,
            ),
            payload_schema={
                k: models.PayloadIndexInfo(data_type=models.PayloadSchemaType(v), points=0)
                for k, v in col.info.get("payload_schema", {}).items()
            },
        )

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any) -> models.UpdateResult:
        col = self._get(collection_name)
        kind = models.PayloadSchemaType(field_schema)
        col.update(edge.UpdateOperation.create_field_index(field_name, _INDEX[kind]))
        with self._guard:
            col.info.setdefault("payload_schema", {})[field_name] = kind.value
            _write_atomically(col.folder / INFO_FILE, col.info)
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    # --- points --------------------------------------------------------------------------------------
    def upsert(
        self, collection_name: str, points: Sequence[models.PointStruct], wait: bool = True
    ) -> models.UpdateResult:
        col = self._get(collection_name)
        batch = [edge.Point(_edge_id(p.id), _vector_in(p.vector), p.payload or {}) for p in points]
        if batch:
            col.update(edge.UpdateOperation.upsert_points(batch), len(batch))
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True) -> models.UpdateResult:
        col = self._get(collection_name)
        if isinstance(points_selector, models.PointIdsList):
            col.update(edge.UpdateOperation.delete_points([_edge_id(i) for i in points_selector.points]))
        elif isinstance(points_selector, models.FilterSelector):
            flt = _filter(points_selector.filter)
            assert flt is not None
            col.update(edge.UpdateOperation.delete_points_by_filter(flt))
        else:
            raise ValueError(f"points selector {type(points_selector).__name__} is not supported")
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def set_payload(
        self, collection_name: str, payload: dict[str, Any], points: Any, key: str | None = None, wait: bool = True
    ) -> models.UpdateResult:
        col = self._get(collection_name)
        if isinstance(points, models.FilterSelector):
            points = points.filter
        if isinstance(points, models.Filter):
            flt = _filter(points)
            assert flt is not None
            col.update(edge.UpdateOperation.set_payload_by_filter(flt, payload, key))
        else:
            col.update(edge.UpdateOperation.set_payload([_edge_id(i) for i in points], payload, key))
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def retrieve(
        self, collection_name: str, ids: Iterable[Any], with_payload: bool | list[str] = True, with_vectors: Any = False
    ) -> list[models.Record]:
        col = self._get(collection_name)
        with col.use() as shard:
            found = shard.retrieve([_edge_id(i) for i in ids], with_payload=_with_payload(with_payload),
                                   with_vector=_with_vector(with_vectors))  # fmt: skip
        return [models.Record(id=_point_id(r.id), payload=r.payload if with_payload else None,
                              vector=_vector_out(r.vector)) for r in found]  # fmt: skip

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: bool | list[str] = True,
        with_vectors: Any = False,
        **_: Any,
    ) -> tuple[list[models.Record], Any]:
        col = self._get(collection_name)
        with col.use() as shard:
            records, next_offset = shard.scroll(
                edge.ScrollRequest(offset=_edge_id(offset) if offset is not None else None, limit=limit,
                                   filter=_filter(scroll_filter), with_payload=_with_payload(with_payload),
                                   with_vector=_with_vector(with_vectors))
            )  # fmt: skip
        out = [models.Record(id=_point_id(r.id), payload=r.payload if with_payload else None,
                             vector=_vector_out(r.vector)) for r in records]  # fmt: skip
        return out, (_point_id(next_offset) if next_offset is not None else None)

    def count(
        self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True
    ) -> models.CountResult:
        col = self._get(collection_name)
        with col.use() as shard:
            return models.CountResult(count=shard.count(edge.CountRequest(exact=True, filter=_filter(count_filter))))

    def _request(self, r: models.QueryRequest) -> edge.QueryRequest:
        prefetch = r.prefetch if isinstance(r.prefetch, list) else ([r.prefetch] if r.prefetch else [])
        return edge.QueryRequest(
            limit=r.limit or 10,
            offset=r.offset,
            query=_query(r.query, r.using) if r.query is not None else None,
            prefetches=[_prefetch(p) for p in prefetch] or None,
            with_vector=_with_vector(r.with_vector),
            with_payload=_with_payload(r.with_payload),
            filter=_filter(r.filter),
            score_threshold=r.score_threshold,
            params=_search_params(r.params),
        )

    @staticmethod
    def _points(found: list[Any], with_payload: Any) -> models.QueryResponse:
        return models.QueryResponse.model_construct(points=[_scored_point(p, with_payload) for p in found])

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        offset: int | None = None,
        score_threshold: float | None = None,
        with_payload: bool | list[str] = True,
        with_vectors: Any = False,
        search_params: models.SearchParams | None = None,
        **_: Any,
    ) -> models.QueryResponse:
        request = models.QueryRequest(query=query, using=using, prefetch=prefetch, filter=query_filter, limit=limit,
                                      offset=offset, score_threshold=score_threshold, with_payload=with_payload,
                                      with_vector=with_vectors, params=search_params)  # fmt: skip
        col = self._get(collection_name)
        with col.use() as shard:
            found = shard.query(self._request(request))
        return self._points(found, with_payload)

    def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest]
    ) -> list[models.QueryResponse]:
        col = self._get(collection_name)
        with col.use() as shard:
            found = shard.query_batch(edge.QueryBatchRequest([self._request(r) for r in requests]))
        return [self._points(f, r.with_payload) for f, r in zip(found, requests, strict=True)]

    # --- upkeep --------------------------------------------------------------------------------------
    def optimize(self, collection_name: str) -> bool:
        """Build the HNSW index and merge segments, here. Blocking, and it holds the GIL throughout
        (qdrant-edge-py 0.9.0): no other Python thread of the process runs meanwhile. A serving process
        builds on a copy in a process of its own instead: `begin_build`."""
        col = self._get(collection_name)
        with col.write_lock, col.use() as shard:
            points = shard.count(edge.CountRequest(exact=True))
            changed = bool(shard.optimize())
            col.written = 0
        with self._guard:
            col.info["indexed_points"] = points
            _write_atomically(col.folder / INFO_FILE, col.info)
        return changed

    def disk_bytes(self, collection_name: str) -> int:
        """Bytes the collection's shard takes on disk (allocated blocks: its files are sparse)."""
        folder = self._folder(collection_name)
        return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())

    def indexing_state(self, collection_name: str) -> tuple[int, int, int]:
        """(points now, points when the index was last built, points upserted since by this process). The
        engine's own indexed-vector count cannot tell: it counts sparse vectors as indexed, and leaves small
        segments unindexed on purpose. The third counts replaced chunks, which leave the count unchanged but
        land outside the index all the same."""
        col = self._get(collection_name)
        with col.use() as shard:
            points = shard.count(edge.CountRequest(exact=True))
        return points, int(col.info.get("indexed_points", 0)), col.written

    # Building the index of a shard that keeps serving: its files are copied (writes wait, queries do
    # not), a process of its own builds the copy's index (Edge holds the GIL while building), the updates
    # made meanwhile are replayed onto the copy, and the copy takes the shard's place (queries wait for
    # that moment only). A crash at any point leaves the shard as it was, or the copy complete in its place.
    def begin_build(self, collection_name: str) -> tuple[Path, int]:
        """Copy the shard for an index build elsewhere; returns the copy's folder and its point count."""
        col = self._get(collection_name)
        builds = self.path / BUILDS
        builds.mkdir(exist_ok=True)
        copy = builds / f"{collection_name}.copy"
        with col.write_lock:
            if col.pending is not None:
                raise RuntimeError(f"the index of {collection_name} is being built already")
            shutil.rmtree(copy, ignore_errors=True)
            with col.use() as shard:
                shard.flush()
                points = shard.count(edge.CountRequest(exact=True))
                try:
                    shutil.copytree(col.folder, copy)
                except BaseException:
                    shutil.rmtree(copy, ignore_errors=True)
                    raise
            col.pending = []
            col.written = 0
        return copy, points

    def abort_build(self, collection_name: str, copy: Path) -> None:
        with self._guard:
            col = self._open.get(collection_name)
        if col is not None:
            with col.write_lock:
                col.pending = None
        shutil.rmtree(copy, ignore_errors=True)

    def finish_build(self, collection_name: str, copy: Path, points: int) -> bool:
        """Put the indexed copy in the shard's place, with every update made since the copy. False when the
        collection was dropped meanwhile (the copy is removed)."""
        with self._guard:
            col = self._open.get(collection_name)
        if col is None or col.pending is None:
            shutil.rmtree(copy, ignore_errors=True)
            return False
        try:
            built = edge.EdgeShard.load(str(copy))
            closed = False
            try:
                while True:  # replay with writes flowing, until what is left is small enough to hold them for
                    with col.write_lock:
                        ops, col.pending = col.pending, []
                        if len(ops) <= 64:  # the rest, and the swap, with writes held back
                            for op in ops:
                                built.update(op)
                            built.flush()
                            built.close()
                            closed = True
                            return self._swap(collection_name, col, copy, points)
                    for op in ops:
                        built.update(op)
            finally:
                if not closed:
                    built.close()
        except BaseException:
            self.abort_build(collection_name, copy)
            raise

    def _swap(self, name: str, col: _Collection, copy: Path, points: int) -> bool:
        """With the collection's writes held (write_lock): the copy replaces the shard's folder."""
        builds = self.path / BUILDS
        old = builds / f"{name}.old"
        with self._guard, col.exclusive():
            if self._open.get(name) is not col:  # dropped (and perhaps re-created) meanwhile
                col.pending = None
                shutil.rmtree(copy, ignore_errors=True)
                return False
            info = {**col.info, "indexed_points": points}
            _write_atomically(copy / INFO_FILE, info)
            col.shard.close()
            shutil.rmtree(old, ignore_errors=True)
            os.rename(col.folder, old)  # from here until the next rename the folder is absent: see _settle_builds
            os.rename(copy, col.folder)
            _fsync_dir(self._root)
            _fsync_dir(builds)
            try:
                col.shard = edge.EdgeShard.load(str(col.folder))
            except BaseException:  # the copy does not open: the shard it was made from comes back
                os.rename(col.folder, copy)
                os.rename(old, col.folder)
                col.shard = edge.EdgeShard.load(str(col.folder))
                col.pending = None
                raise
            col.info = info
            col.pending = None
        shutil.rmtree(old, ignore_errors=True)
        return True

    def _settle_builds(self) -> None:
        """What a process killed during an index build left: a swap cut between its two renames is undone
        (the shard it was replacing comes back); copies are removed."""
        builds = self.path / BUILDS
        if not builds.is_dir():
            return
        for entry in sorted(builds.iterdir()):
            if entry.name.endswith(".old"):
                target = self._root / entry.name[: -len(".old")]
                if not (target / INFO_FILE).is_file():
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(entry, target)
                    _fsync_dir(self._root)
                    continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()

    def close(self) -> None:
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for col in self._open.values():
                with col.exclusive():
                    col.shard.close()
            self._open.clear()
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
