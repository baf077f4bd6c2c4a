"""The nearest-neighbour index behind semantic search, on disk: derived data that can always be rebuilt.

An index folder holds one snapshot of the index, named by `state.json`:

    state.json               which files make up the snapshot and how far the database was read
    main-<id>.usearch        HNSW graph over int8-quantised unit vectors (usearch), memory-mapped read-only
    main-<id>.keys.npy       the main graph's keys (record ids), sorted
    delta-<id>.npz           vectors added since the main graph was built (searched exactly), and main keys
                             that are no longer wanted (removed)
    lock                     held by a process while it writes a new snapshot

Readers never wait: they read `state.json`, then map the files it names. A writer takes the lock, writes
new files under fresh names, then replaces `state.json` atomically (`os.replace`) and deletes the files
no snapshot names any more (a reader that still maps one keeps its pages). So two processes can search
and update the same folder; a half-written or damaged file is detected on load (`IndexUnusable`) and the
caller rebuilds it.

    index = VectorIndex.load(folder)                  # raises IndexUnusable when missing or damaged
    keys, scores = index.nearest(query_vector, 40)    # best first; scores are cosine similarities
    index = index.changed(add=(keys, vectors), remove=stale_keys)
    index.save(sync_point)                            # under `index_lock(folder)`

This module knows nothing about the database: `visextract.store.search_index` keeps it caught up.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
STATE_FILE = "state.json"
LOCK_FILE = "lock"
# HNSW settings, chosen by measurement at 1M MiniLM vectors (see bench/query.py and issue 17):
CONNECTIVITY = 16  # graph degree: recall vs. size
EXPANSION_ADD = 128  # candidate list while building: build time vs. graph quality
EXPANSION_SEARCH = 128  # candidate list while searching (raised to the count asked for)
SCALAR = "i8"  # one byte per dimension: 384 MB at 1M vectors, ranked again exactly by the caller
PROBES = 4  # stored vectors searched again on load: a damaged graph fails to find them


class IndexUnusable(Exception):
    """The folder holds no index, or one that cannot be trusted: rebuild it."""


@dataclass(frozen=True)
class SyncPoint:
    """How far the database was read: every record with id <= `record_id` was considered, and the
    listed records were last reconciled when the run table looked like `runs`."""

    record_id: int = 0
    runs: str = ""


@dataclass(frozen=True)
class VectorIndex:
    """An immutable snapshot of the index: a memory-mapped main graph plus an exact delta."""

    folder: Path
    model: str
    dimensions: int
    synced: SyncPoint = SyncPoint()
    snapshot_id: str = ""
    main: Any = None  # usearch Index in view mode, or None
    main_file: str | None = None
    main_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    main_probes: tuple[dict[str, Any], ...] = ()  # a few (key, vector) pairs the graph must find again
    delta_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    delta_vectors: np.ndarray | None = None
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted subset of main_keys

    @classmethod
    def empty(cls, folder: Path, model: str, dimensions: int) -> VectorIndex:
        return cls(folder, model, dimensions, delta_vectors=np.zeros((0, dimensions), np.float32))

    # ---- reading -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.main_keys) - len(self.removed) + len(self.delta_keys)

    def live_keys(self) -> np.ndarray:
        """Every key a search can return, sorted."""
        main = np.setdiff1d(self.main_keys, self.removed, assume_unique=True)
        return np.union1d(main, self.delta_keys)

    def nearest(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `count` keys most similar to the unit `vector`, best first, with cosine similarities
        (approximate for the main graph: int8 vectors)."""
        keys = [np.zeros(0, np.int64)]
        scores = [np.zeros(0, np.float32)]
        if self.main is not None and len(self.main_keys):
            wanted = min(len(self.main_keys), count + len(self.removed))
            self.main.expansion_search = max(EXPANSION_SEARCH, wanted)
            found = self.main.search(vector, wanted)
            found_keys = np.asarray(found.keys, dtype=np.int64)
            keep = ~np.isin(found_keys, self.removed, assume_unique=False) if len(self.removed) else slice(None)
            keys.append(found_keys[keep])
            scores.append(1 - np.asarray(found.distances, dtype=np.float32)[keep])
        if len(self.delta_keys):
            assert self.delta_vectors is not None
            delta_scores = self.delta_vectors @ vector
            top = np.argsort(-delta_scores)[:count]
            keys.append(self.delta_keys[top])
            scores.append(delta_scores[top])
        all_keys, all_scores = np.concatenate(keys), np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")[:count]
        return all_keys[order], all_scores[order]

    # ---- changing ------------------------------------------------------------------------------------

    def changed(
        self, add: tuple[np.ndarray, np.ndarray] | None = None, remove: Iterable[int] | np.ndarray = ()
    ) -> VectorIndex:
        """A new snapshot with `add` = (keys, unit vectors) added (replacing the same keys) and `remove`
        keys gone. A key the main graph still holds comes back by leaving the removed set."""
        remove = np.unique(np.asarray(list(remove) if not isinstance(remove, np.ndarray) else remove, np.int64))
        delta_keys, delta_vectors = self.delta_keys, self.delta_vectors
        assert delta_vectors is not None
        removed = np.union1d(self.removed, remove[np.isin(remove, self.main_keys)])
        drop = remove
        if add is not None and len(add[0]):
            add_keys, add_vectors = np.asarray(add[0], np.int64), np.asarray(add[1], np.float32)
            in_main = np.isin(add_keys, self.main_keys)
            removed = np.setdiff1d(removed, add_keys[in_main], assume_unique=True)  # the graph has them
            drop = np.union1d(drop, add_keys)
            keep = ~np.isin(delta_keys, drop)
            delta_keys = np.concatenate([delta_keys[keep], add_keys[~in_main]])
            delta_vectors = np.concatenate([delta_vectors[keep], add_vectors[~in_main]])
        elif len(drop):
            keep = ~np.isin(delta_keys, drop)
            delta_keys, delta_vectors = delta_keys[keep], delta_vectors[keep]
        return replace(self, delta_keys=delta_keys, delta_vectors=delta_vectors, removed=removed)

    # ---- files ---------------------------------------------------------------------------------------

    def save(self, synced: SyncPoint) -> VectorIndex:
        """Write this snapshot's delta and point `state.json` at it (call under `index_lock`)."""
        snapshot_id = uuid.uuid4().hex[:12]
        delta_file = f"delta-{snapshot_id}.npz"
        assert self.delta_vectors is not None
        _atomic_write(
            self.folder / delta_file,
            lambda f: np.savez(f, keys=self.delta_keys, vectors=self.delta_vectors, removed=self.removed),
        )
        state = {
            "format": FORMAT,
            "model": self.model,
            "dimensions": self.dimensions,
            "synced": {"record_id": synced.record_id, "runs": synced.runs},
            "main": self._main_state(),
            "delta": {"file": delta_file, "bytes": (self.folder / delta_file).stat().st_size},
        }
        _atomic_write(self.folder / STATE_FILE, lambda f: f.write(json.dumps(state, indent=1).encode()))
        _delete_unnamed_files(self.folder, keep={delta_file, *self._main_files()})
        return replace(self, synced=synced, snapshot_id=snapshot_id)

    def _main_state(self) -> dict[str, Any] | None:
        if self.main_file is None:
            return None
        return {
            "file": self.main_file,
            "bytes": (self.folder / self.main_file).stat().st_size,
            "count": len(self.main_keys),
            "probes": list(self.main_probes),
        }

    def _main_files(self) -> set[str]:
        return {self.main_file, self.main_file.replace(".usearch", ".keys.npy")} if self.main_file else set()

    @classmethod
    def load(cls, folder: Path, model: str, dimensions: int) -> VectorIndex:
        """The snapshot `state.json` names; IndexUnusable if there is none or any part of it is damaged."""
        try:
            state = json.loads((folder / STATE_FILE).read_bytes())
            if state.get("format") != FORMAT or state.get("model") != model or state.get("dimensions") != dimensions:
                raise IndexUnusable(f"index in {folder} was made for another model or format")
            synced = SyncPoint(int(state["synced"]["record_id"]), str(state["synced"]["runs"]))
            delta_path = folder / state["delta"]["file"]
            if delta_path.stat().st_size != state["delta"]["bytes"]:
                raise IndexUnusable(f"{delta_path} has the wrong size")
            with np.load(delta_path, allow_pickle=False) as delta:
                delta_keys = delta["keys"].astype(np.int64)
                delta_vectors = delta["vectors"].astype(np.float32)
                removed = delta["removed"].astype(np.int64)
            if delta_vectors.shape != (len(delta_keys), dimensions):
                raise IndexUnusable(f"{delta_path} holds vectors of the wrong shape")
            main, main_file, main_keys, probes = None, None, np.zeros(0, np.int64), []
            if state["main"] is not None:
                main_file = state["main"]["file"]
                main, main_keys = _open_main(folder, state["main"], dimensions)
                probes = state["main"]["probes"]
        except IndexUnusable:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError) as exc:
            raise IndexUnusable(f"index in {folder} is missing or damaged: {exc}") from None
        return cls(
            folder,
            model,
            dimensions,
            synced=synced,
            snapshot_id=str(state["delta"]["file"])[len("delta-") : -len(".npz")],
            main=main,
            main_file=main_file,
            main_keys=main_keys,
            main_probes=tuple(probes),
            delta_keys=delta_keys,
            delta_vectors=delta_vectors,
            removed=removed,
        )

    def with_main(self, main_file: str, probes: list[dict[str, Any]]) -> VectorIndex:
        """This snapshot with a freshly built main graph (written by `write_main`) and an empty delta."""
        main, main_keys = _open_main(
            self.folder, {"file": main_file, "bytes": (self.folder / main_file).stat().st_size, "probes": probes},
            self.dimensions,
        )  # fmt: skip
        return replace(
            self,
            main=main,
            main_file=main_file,
            main_keys=main_keys,
            main_probes=tuple(probes),
            delta_keys=np.zeros(0, np.int64),
            delta_vectors=np.zeros((0, self.dimensions), np.float32),
            removed=np.zeros(0, np.int64),
        )


def _open_main(folder: Path, main_state: dict[str, Any], dimensions: int) -> tuple[Any, np.ndarray]:
    """Map the main graph read-only and check it: size, header, key count, and that it still finds
    the probe vectors stored when it was built."""
    from usearch.index import Index

    path = folder / main_state["file"]
    if path.stat().st_size != main_state["bytes"]:
        raise IndexUnusable(f"{path} has the wrong size")
    keys = np.load(folder / main_state["file"].replace(".usearch", ".keys.npy"), allow_pickle=False)
    main = Index.restore(str(path), view=True)
    if main is None or main.ndim != dimensions or len(main) != len(keys):
        raise IndexUnusable(f"{path} is not the graph state.json describes")
    for probe in main_state.get("probes", []):
        found = main.search(np.asarray(probe["vector"], np.float32), 10)
        if int(probe["key"]) not in np.asarray(found.keys).tolist():
            raise IndexUnusable(f"{path} no longer finds its own vectors")
    return main, keys.astype(np.int64)


def write_main(
    folder: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], dimensions: int, base: VectorIndex | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Build a main graph from `base`'s live vectors (if any) plus `batches` of (keys, unit vectors);
    write it under a fresh name and return (file name, probes). Holds the whole graph in memory."""
    from usearch.index import Index

    graph = Index(ndim=dimensions, metric="cos", dtype=SCALAR, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
    if base is not None and base.main_file is not None:
        graph = Index.restore(str(base.folder / base.main_file), view=False)  # a writable copy in memory
        if graph is None:
            raise IndexUnusable(f"cannot read {base.main_file}")
        if len(base.removed):
            graph.remove(base.removed.astype(np.uint64))
    probes: list[dict[str, Any]] = []
    for keys, vectors in batches:
        if not len(keys):
            continue
        keys = np.asarray(keys, np.int64)
        present = np.fromiter((graph.contains(int(k)) for k in keys), bool, len(keys)) if len(graph) else None
        if present is not None and present.any():
            graph.remove(keys[present].astype(np.uint64))
        graph.add(keys.astype(np.uint64), np.ascontiguousarray(vectors, np.float32), threads=os.cpu_count() or 1)
        for i in np.linspace(0, len(keys) - 1, num=min(len(keys), PROBES), dtype=int)[: PROBES - len(probes)]:
            probes.append({"key": int(keys[i]), "vector": [round(float(x), 6) for x in vectors[i]]})
    main_file = f"main-{uuid.uuid4().hex[:12]}.usearch"
    all_keys = np.sort(np.asarray(graph.keys, dtype=np.int64)) if len(graph) else np.zeros(0, np.int64)
    _atomic_write(folder / main_file.replace(".usearch", ".keys.npy"), lambda f: np.save(f, all_keys))
    temporary = folder / f".{main_file}.tmp"
    graph.save(str(temporary))
    with temporary.open("rb+") as written:
        os.fsync(written.fileno())
    os.replace(temporary, folder / main_file)
    return main_file, probes


# ---- files and locking ------------------------------------------------------------------------------


@contextlib.contextmanager
def index_lock(folder: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the folder's write lock (an advisory file lock, released if the process dies). Yields False
    without waiting when `blocking` is False and another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=-1 if blocking else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _atomic_write(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _delete_unnamed_files(folder: Path, keep: set[str]) -> None:
    """Delete earlier snapshots' files (a process still mapping one keeps reading it until it closes),
    and temporary files a writer that died left behind (writers hold the lock, as the caller does)."""
    for path in folder.iterdir():
        if path.name in keep:
            continue
        if path.name.startswith(("main-", "delta-")) or (path.name.startswith(".") and path.name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                path.unlink()
