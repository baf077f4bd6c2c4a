"""The nearest-neighbour index behind semantic search, on disk: derived data that can always be rebuilt.

The main index is a faiss IVF index over int8-quantised unit vectors (`IndexIVFScalarQuantizer`, inner
product): k-means cells, of which a search scans the NPROBE nearest. It is memory-mapped read-only, so
a search process holds only the pages it reads (a few MB per query), whatever the collection's size.
Vectors added since the main index was built sit in a small exact "delta"; keys removed since are
filtered out. When the delta grows past a limit the caller merges it into a new main index.
(faiss IVF was chosen over usearch's and hnswlib's HNSW graphs by measurement, `bench/ann_choice.py`: at 1M
vectors only IVF kept recall@10 >= 0.95 on near-duplicate search texts, in a search process of ~110 MB.)

An index folder holds one snapshot, named by `state.json`:

    state.json            which files make up the snapshot, how far the database was read (replaced atomically)
    main-<id>.faiss       the IVF index                    main-<id>.keys.npy   its keys (record ids), sorted
    delta-<id>.npz        exact vectors added since, and main keys removed since
    lock                  held by a process while it writes

Readers never wait: they read `state.json`, then map the files it names. A writer takes the lock,
writes new files under fresh names, replaces `state.json` atomically (`os.replace`), then deletes files
no snapshot names any more (a reader that still maps one keeps its pages). A damaged or half-written
file is detected on load (sizes, a sampled checksum, probe vectors that must be where they were put)
and reported as `IndexUnusable`, so that the caller rebuilds. (Files are never changed in place: a
process that has one mapped while something else truncates it could be killed by the kernel.)

    index = VectorIndex.load(folder, model, 384)      # raises IndexUnusable when missing or damaged
    keys, scores = index.nearest(query_vector, 40)    # best first; approximate cosine similarities
    index = index.changed(add=(keys, vectors), remove=stale_keys)
    index = index.save(sync_point)                    # under `index_lock(folder)`

This module knows nothing about the database: `visextract.store.search_index` keeps it caught up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 2
STATE_FILE = "state.json"
LOCK_FILE = "lock"
# IVF settings, chosen by measurement at 1M MiniLM vectors (bench/query.py, issue 17):
NPROBE = 16  # cells scanned per search: recall@10 1.0 after exact re-ranking, about 2 ms at 1M vectors
TRAINING_POINTS_PER_CELL = 64  # k-means sample size per cell (faiss wants at least 39)
PROBES = 4  # stored vectors that must still sit in their cells when the index is loaded
_DIGEST_HEAD = 4 << 20  # bytes of the file's start hashed on load: header, centroids, cell sizes
_DIGEST_BLOCKS = 256  # plus this many 4 KiB blocks spread over the rest, and the last MiB


class IndexUnusable(Exception):
    """The folder holds no index, or one that cannot be trusted: rebuild it."""


@dataclass(frozen=True)
class SyncPoint:
    """How far the database was read: every record with id <= `record_id` was considered, and the
    listed records were last reconciled when the run table looked like `runs`."""

    record_id: int = 0
    runs: str = ""


@dataclass(frozen=True)
class MainIndex:
    """A written IVF index file, memory-mapped, with what is needed to check it."""

    file: str
    index: Any  # faiss.IndexIVFScalarQuantizer over read-only mapped cells
    keys: np.ndarray  # sorted int64
    trained_for: int  # how many vectors the cells were trained on (the index is rebuilt once it outgrows them)
    digest: str
    probes: tuple[dict[str, Any], ...]

    def state(self, folder: Path) -> dict[str, Any]:
        return _main_state(folder, self.file, self.keys, self.trained_for, self.digest, self.probes)


def _main_state(
    folder: Path, file: str, keys: np.ndarray, trained_for: int, digest: str, probes: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "file": file,
        "bytes": (folder / file).stat().st_size,
        "count": len(keys),
        "trained_for": trained_for,
        "digest": digest,
        "probes": list(probes),
    }


@dataclass(frozen=True)
class VectorIndex:
    """An immutable snapshot of the index: a memory-mapped main index plus an exact delta."""

    folder: Path
    model: str
    dimensions: int
    synced: SyncPoint = SyncPoint()
    snapshot_id: str = ""
    main: MainIndex | None = None
    delta_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    delta_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted subset of main keys

    @classmethod
    def empty(cls, folder: Path, model: str, dimensions: int) -> VectorIndex:
        return cls(folder, model, dimensions, delta_vectors=np.zeros((0, dimensions), np.float32))

    # ---- reading -------------------------------------------------------------------------------------

    @property
    def main_keys(self) -> np.ndarray:
        return self.main.keys if self.main is not None else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.main_keys) - len(self.removed) + len(self.delta_keys)

    @property
    def entries(self) -> int:
        """Vectors held, removed ones included: asking `nearest` for this many returns every live key."""
        return len(self.main_keys) + len(self.delta_keys)

    def live_keys(self) -> np.ndarray:
        """Every key a search can return, sorted."""
        return np.union1d(np.setdiff1d(self.main_keys, self.removed, assume_unique=True), self.delta_keys)

    def nearest(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `count` live keys most similar to the unit `vector`, best first, with their approximate
        cosine similarities (fewer when removed keys took places: ask again for more)."""
        keys = [np.zeros(0, np.int64)]
        scores = [np.zeros(0, np.float32)]
        if self.main is not None and len(self.main.keys):
            # removed keys come back from the cells too: ask for more (the caller asks again if short)
            found_keys, found_scores = _search_cells(self.main.index, vector, count + min(count, len(self.removed)))
            keep = ~np.isin(found_keys, self.removed)
            keys.append(found_keys[keep])
            scores.append(found_scores[keep])
        if len(self.delta_keys):
            delta_scores = self.delta_vectors @ vector
            top = np.argsort(-delta_scores)[:count]
            keys.append(self.delta_keys[top])
            scores.append(delta_scores[top])
        all_keys, all_scores = np.concatenate(keys), np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")[:count]
        return all_keys[order], all_scores[order]

    # ---- changing ------------------------------------------------------------------------------------

    def changed(
        self, add: tuple[np.ndarray, np.ndarray] | None = None, remove: np.ndarray | None = None
    ) -> VectorIndex:
        """A new snapshot with `add` = (keys, unit vectors) added (replacing the same keys) and the keys
        in `remove` gone. A removed key the main index still holds comes back by leaving the removed set."""
        remove = np.unique(np.asarray(remove if remove is not None else [], np.int64))
        add_keys = np.asarray(add[0] if add is not None else [], np.int64)
        add_vectors = np.asarray(add[1], np.float32).reshape(len(add_keys), self.dimensions) if add else None
        removed = np.union1d(self.removed, remove[np.isin(remove, self.main_keys)])
        keep = ~np.isin(self.delta_keys, np.union1d(remove, add_keys))
        delta_keys, delta_vectors = self.delta_keys[keep], self.delta_vectors[keep]
        if add_vectors is not None and len(add_keys):
            in_main = np.isin(add_keys, self.main_keys)
            removed = np.setdiff1d(removed, add_keys[in_main], assume_unique=True)  # the main index has them
            delta_keys = np.concatenate([delta_keys, add_keys[~in_main]])
            delta_vectors = np.concatenate([delta_vectors, add_vectors[~in_main]])
        return replace(self, delta_keys=delta_keys, delta_vectors=delta_vectors, removed=removed)

    def with_main(self, main: MainIndex) -> VectorIndex:
        """This snapshot with a new main index (from `build_main`/`merge_main`) and an empty delta."""
        return replace(
            self,
            main=main,
            delta_keys=np.zeros(0, np.int64),
            delta_vectors=np.zeros((0, self.dimensions), np.float32),
            removed=np.zeros(0, np.int64),
        )

    # ---- files ---------------------------------------------------------------------------------------

    def save(self, synced: SyncPoint) -> VectorIndex:
        """Write this snapshot's delta and point `state.json` at it (call under `index_lock`)."""
        snapshot_id = uuid.uuid4().hex[:12]
        delta_file = f"delta-{snapshot_id}.npz"
        _atomic_write(
            self.folder / delta_file,
            lambda f: np.savez(f, keys=self.delta_keys, vectors=self.delta_vectors, removed=self.removed),
        )
        state = {
            "format": FORMAT,
            "model": self.model,
            "dimensions": self.dimensions,
            "synced": {"record_id": synced.record_id, "runs": synced.runs},
            "main": self.main.state(self.folder) if self.main is not None else None,
            "delta": {"file": delta_file, "bytes": (self.folder / delta_file).stat().st_size},
        }
        _atomic_write(self.folder / STATE_FILE, lambda f: f.write(json.dumps(state, indent=1).encode()))
        keep = {delta_file}
        if self.main is not None:
            keep |= {self.main.file, _keys_file(self.main.file)}
        _delete_unnamed_files(self.folder, keep)
        return replace(self, synced=synced, snapshot_id=snapshot_id)

    @classmethod
    def load(cls, folder: Path, model: str, dimensions: int, known_main: MainIndex | None = None) -> VectorIndex:
        """The snapshot `state.json` names; IndexUnusable if there is none or any part of it is damaged.
        A main index this process already has open and checked (`known_main`) is reused."""
        try:
            state = json.loads((folder / STATE_FILE).read_bytes())
            if (state.get("format"), state.get("model"), state.get("dimensions")) != (FORMAT, model, dimensions):
                raise IndexUnusable(f"the index in {folder} was made for another model or by another version")
            synced = SyncPoint(int(state["synced"]["record_id"]), str(state["synced"]["runs"]))
            delta_file = str(state["delta"]["file"])
            delta_path = folder / delta_file
            if delta_path.stat().st_size != state["delta"]["bytes"]:
                raise IndexUnusable(f"{delta_path} has the wrong size")
            with np.load(delta_path, allow_pickle=False) as delta:
                delta_keys = delta["keys"].astype(np.int64)
                delta_vectors = delta["vectors"].astype(np.float32)
                removed = delta["removed"].astype(np.int64)
            if delta_vectors.shape != (len(delta_keys), dimensions):
                raise IndexUnusable(f"{delta_path} holds vectors of the wrong shape")
            main = None
            if state["main"] is not None:
                known = (
                    known_main is not None
                    and known_main.file == state["main"]["file"]
                    and known_main.state(folder) == state["main"]
                )
                main = known_main if known else _open_main(folder, state["main"], dimensions)
        except IndexUnusable:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError) as exc:
            raise IndexUnusable(f"the index in {folder} is missing or damaged: {exc}") from None
        return cls(
            folder,
            model,
            dimensions,
            synced=synced,
            snapshot_id=delta_file.removeprefix("delta-").removesuffix(".npz"),
            main=main,
            delta_keys=delta_keys,
            delta_vectors=delta_vectors,
            removed=removed,
        )


def snapshot_id_on_disk(folder: Path) -> str | None:
    """The id of the snapshot `state.json` names now, or None."""
    try:
        state = json.loads((folder / STATE_FILE).read_bytes())
        return str(state["delta"]["file"]).removeprefix("delta-").removesuffix(".npz")
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- the main index ---------------------------------------------------------------------------------


def build_main(folder: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], dimensions: int) -> MainIndex:
    """Train and fill a new main index with `batches` of (keys, unit vectors), and write it.

    The vectors are spilled to a temporary file first (so memory holds one batch, the training sample
    and the index's int8 codes), then a random sample trains the cells."""
    import faiss

    spill = folder / f".spill-{uuid.uuid4().hex[:12]}.tmp"
    all_keys = []
    try:
        with spill.open("wb") as file:
            for keys, vectors in batches:
                all_keys.append(np.asarray(keys, np.int64))
                file.write(np.ascontiguousarray(vectors, np.float32).tobytes())
        keys = np.concatenate(all_keys) if all_keys else np.zeros(0, np.int64)
        cells = max(1, min(round(math.sqrt(len(keys))), len(keys) // 39))
        sample = np.sort(np.random.default_rng(0).permutation(len(keys))[: TRAINING_POINTS_PER_CELL * cells])
        spilled = np.memmap(spill, np.float32, "r", shape=(len(keys), dimensions)) if len(keys) else None
        training = np.array(spilled[sample]) if spilled is not None and len(sample) else None
        del spilled
        quantizer = faiss.IndexFlatIP(dimensions)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dimensions, cells, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        if cells == 1:  # one cell needs no k-means (which would warn about too few points)
            quantizer.add(np.ones((1, dimensions), np.float32) / math.sqrt(dimensions))
        index.train(training if training is not None else np.zeros((1, dimensions), np.float32))
        with spill.open("rb") as file:
            for start in range(0, len(keys), 50_000):
                rows = _read_rows(file, start, min(50_000, len(keys) - start), dimensions)
                index.add_with_ids(rows, keys[start : start + len(rows)])
            probe_rows = np.linspace(0, len(keys) - 1, num=min(len(keys), PROBES), dtype=int)
            probes = [(int(keys[i]), _read_rows(file, int(i), 1, dimensions)[0]) for i in probe_rows]
    finally:
        with contextlib.suppress(OSError):
            spill.unlink()
    return _write_main(folder, index, np.sort(keys), len(keys), probes)


def merge_main(snapshot: VectorIndex) -> MainIndex:
    """A new main index: the snapshot's main without its removed keys, plus its delta (same cells)."""
    import faiss

    assert snapshot.main is not None
    index = faiss.read_index(str(snapshot.folder / snapshot.main.file))  # a writable copy in memory
    if len(snapshot.removed):
        index.remove_ids(snapshot.removed)
    if len(snapshot.delta_keys):
        index.add_with_ids(np.ascontiguousarray(snapshot.delta_vectors), snapshot.delta_keys)
    keys = np.union1d(np.setdiff1d(snapshot.main.keys, snapshot.removed, assume_unique=True), snapshot.delta_keys)
    probes = [(int(k), v) for k, v in zip(snapshot.delta_keys[:PROBES], snapshot.delta_vectors[:PROBES], strict=True)]
    old = [(int(p["key"]), np.asarray(p["vector"], np.float32)) for p in snapshot.main.probes]
    probes += [(k, v) for k, v in old if k in set(keys.tolist())][: PROBES - len(probes)]
    return _write_main(snapshot.folder, index, keys, snapshot.main.trained_for, probes)


def _write_main(
    folder: Path, index: Any, keys: np.ndarray, trained_for: int, probes: list[tuple[int, np.ndarray]]
) -> MainIndex:
    import faiss

    name = f"main-{uuid.uuid4().hex[:12]}.faiss"
    _atomic_write(folder / _keys_file(name), lambda f: np.save(f, keys))
    temporary = folder / f".{name}.tmp"
    faiss.write_index(index, str(temporary))
    with temporary.open("rb+") as written:
        os.fsync(written.fileno())
    os.replace(temporary, folder / name)
    probe_state = [{"key": key, "vector": [round(float(x), 7) for x in vector]} for key, vector in probes]
    state = _main_state(folder, name, keys, trained_for, _sampled_digest(folder / name), probe_state)
    return _open_main(folder, state, index.d)


def _open_main(folder: Path, state: dict[str, Any], dimensions: int) -> MainIndex:
    """Map the main index read-only after checking it: size, sampled checksum, key count, and that each
    probe vector's cell still holds the probe's key."""
    import faiss

    path = folder / state["file"]
    if path.stat().st_size != state["bytes"] or _sampled_digest(path) != state["digest"]:
        raise IndexUnusable(f"{path} is damaged (its size or checksum changed)")
    keys = np.load(folder / _keys_file(state["file"]), allow_pickle=False).astype(np.int64)
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    if index.d != dimensions or index.ntotal != len(keys) or len(keys) != state["count"]:
        raise IndexUnusable(f"{path} is not the index state.json describes")
    for probe in state["probes"]:
        cell = int(index.quantizer.search(np.asarray([probe["vector"]], np.float32), 1)[1][0][0])
        size = index.invlists.list_size(cell)
        if int(probe["key"]) not in faiss.rev_swig_ptr(index.invlists.get_ids(cell), size).tolist():
            raise IndexUnusable(f"{path} no longer holds its vectors where it put them")
    return MainIndex(state["file"], index, keys, int(state["trained_for"]), state["digest"], tuple(state["probes"]))


def _search_cells(index: Any, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `count` (keys, scores) of the nearest cells; more cells are scanned while they hold
    fewer vectors than asked for and others remain."""
    import faiss

    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)  # one query scans a few cells: threads only add hand-offs and waits
    count = min(count, index.ntotal)
    cells = min(NPROBE, index.nlist)
    while True:
        scores, keys = index.search(vector[None, :], count, params=faiss.SearchParametersIVF(nprobe=cells))
        found = keys[0] >= 0
        if found.sum() >= count or cells >= index.nlist:
            return keys[0][found].astype(np.int64), scores[0][found]
        cells = min(index.nlist, cells * 4)


def _read_rows(file: Any, start: int, count: int, dimensions: int) -> np.ndarray:
    file.seek(start * dimensions * 4)
    return np.fromfile(file, np.float32, count * dimensions).reshape(-1, dimensions)


def _sampled_digest(path: Path) -> str:
    """A checksum of the file's first 4 MiB, its last MiB and 256 blocks spread in between: cheap to
    take on every load (a few MB read) and it changes with truncation, zeroed or overwritten ranges."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with path.open("rb") as file:
        digest.update(file.read(_DIGEST_HEAD))
        for offset in np.linspace(_DIGEST_HEAD, max(_DIGEST_HEAD, size - 4096), num=_DIGEST_BLOCKS, dtype=np.int64):
            file.seek(int(offset))
            digest.update(file.read(4096))
        file.seek(max(0, size - (1 << 20)))
        digest.update(file.read())
    return digest.hexdigest()


def _keys_file(main_file: str) -> str:
    return main_file.removesuffix(".faiss") + ".keys.npy"


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
