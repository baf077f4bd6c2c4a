"""Keeping a database's search index caught up: the vector index is derived data, read from the database.

    index = search_index(store)          # this process's handle, one per database and index folder
    snapshot = index.current()           # caught up with the database first (cheap when nothing changed)

Each search first asks the database two cheap questions: the highest record id, and a signature of the
`run` table. When both match what the index last read, the search goes straight to the index. Otherwise,
under the folder's lock:
- records with a higher id are read (with their stored embeddings) and the listed ones added; the older
  records of the same images that stopped being listed (re-extracted, reviewed) are removed;
- when the run table changed (a run started or finished: paths may have gone missing or come back), the
  listed record ids are compared with the index's keys, and the difference added or removed;
- a listed record with no stored embedding (made by an older visextract, or by a run that crashed
  before saving it) is embedded here and its embedding saved;
- once the exactly-searched delta (or the set of removed keys) grows past DELTA_LIMIT, both are merged
  into a new main index.
A missing or damaged index is rebuilt from the stored embeddings; a large build runs in a child process
so that the searching process stays small. The index lives next to a SQLite database (`photos.db` ->
`photos-index/`) or, for a server database, in a per-user cache folder keyed by the URL: each query
host keeps its own. `VISEXTRACT_INDEX_DIR` moves it.

Searches never trust the index alone: `visextract.store.search` resolves every hit against the
database (still current, not missing) and drops stale ones, so the index may lag without harm.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError

from visextract.errors import StoreError
from visextract.store.ann_index import (
    IndexUnusable,
    SyncPoint,
    VectorIndex,
    build_main,
    index_lock,
    merge_main,
    snapshot_id_on_disk,
)
from visextract.store.engine import parse_db_url
from visextract.store.store import Store

log = logging.getLogger(__name__)

DELTA_LIMIT = 25_000  # added vectors searched exactly (37 MB), or removed keys, before a merge
CHILD_BUILD_MIN = 100_000  # main indexes of at least this many vectors are built in a child process
BATCH = 10_000  # records read from the database at a time
LISTED = "r.is_current AND NOT r.missing"  # the records users see (`store.listed()` as SQL)
SEARCHABLE = f"{LISTED} AND r.status != 'failed'"  # what the index holds: failed records have no search text
_LISTED_VECTORS = text(
    f"SELECT r.id, e.vector FROM record r LEFT JOIN record_embedding e ON e.record_id = r.id "
    f"WHERE r.id > :after AND r.id <= :up_to AND {SEARCHABLE} ORDER BY r.id LIMIT :n"
)
_STORED_VECTORS = text("SELECT record_id, vector FROM record_embedding WHERE record_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_SUPERSEDED = text(  # older records of images that got a new record, no longer listed
    "SELECT old.id FROM record new JOIN record old ON old.image_id = new.image_id "
    "WHERE new.id > :after AND new.id <= :up_to AND old.id <= :after "
    f"AND NOT ({LISTED.replace('r.', 'old.')})"
)


def index_folder(url: str, index_dir: Path | None = None) -> Path:
    """Where the index of the database at `url` lives (created if needed).

    - `index_dir` given (VISEXTRACT_INDEX_DIR): `<index_dir>/<hash of the URL>/`;
    - a SQLite file: next to it, `photos.db` -> `photos-index/`;
    - anything else: `~/.cache/visextract/search-index/<hash of the URL>/` (XDG_CACHE_HOME is honoured).
    A folder that cannot be created falls back to the temporary directory.
    """
    parsed = parse_db_url(url)
    key = hashlib.sha256(parsed.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    if index_dir is not None:
        folder = Path(index_dir).expanduser().absolute() / key
    elif parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        database = Path(parsed.database.removeprefix("file:").split("?")[0]).expanduser().absolute()
        folder = database.with_name(f"{database.stem}-index")
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = cache / "visextract" / "search-index" / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"visextract-search-index-{os.getuid()}" / key
        log.warning("cannot create the search index folder %s; using %s", folder, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        folder = fallback
    return folder


class SearchIndex:
    """One database's vector index in this process: the latest snapshot, caught up on demand."""

    def __init__(self, store: Store, folder: Path) -> None:
        from visextract.local_models.embedder import DIMENSIONS, EMBEDDING_MODEL

        self.store = store
        self.folder = folder
        self.model = EMBEDDING_MODEL
        self.dimensions = DIMENSIONS
        self._snapshot: VectorIndex | None = None
        self._lock = threading.Lock()

    def current(self) -> VectorIndex:
        """The index, caught up with the database."""
        probe = _probe(self.store)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.synced == probe:
            return snapshot
        self.folder.mkdir(parents=True, exist_ok=True)  # it may have been deleted
        with self._lock, index_lock(self.folder):
            try:
                ours = self._snapshot
                if ours is not None and snapshot_id_on_disk(self.folder) == ours.snapshot_id:
                    snapshot = ours  # nobody else wrote since: no need to read it again
                else:
                    snapshot = VectorIndex.load(self.folder, self.model, self.dimensions, ours.main if ours else None)
            except IndexUnusable as why:
                if self._snapshot is not None or any(self.folder.glob("state.json")):
                    log.warning("rebuilding the search index: %s", why)
                snapshot = self._build()
            if snapshot.synced != probe:
                snapshot = self._catch_up(snapshot)
            self._snapshot = snapshot
            return snapshot

    def forget(self, keys: Iterable[int]) -> VectorIndex:
        """Drop keys a search found stale (no longer listed) from this process's snapshot, and from the
        folder when no other process is writing it at the moment; returns the new snapshot."""
        with self._lock:
            snapshot = self._snapshot
            assert snapshot is not None, "forget() follows current()"
            changed = snapshot.changed(remove=np.fromiter(keys, np.int64))
            with index_lock(self.folder, blocking=False) as locked:
                if locked and snapshot_id_on_disk(self.folder) == snapshot.snapshot_id:
                    changed = changed.save(snapshot.synced)
            self._snapshot = changed
            return changed

    # ---- writing (under the folder lock) --------------------------------------------------------

    def _build(self) -> VectorIndex:
        """A new index of every listed record, read up to the database's current highest record id."""
        if _probe(self.store).record_id < CHILD_BUILD_MIN:
            return self.build()
        log.warning(
            "building the search index of %s in %s (once; later searches add only what changed)",
            self.store.safe_url,
            self.folder,
        )
        _in_child(self.store.url, self.folder, "build")
        return VectorIndex.load(self.folder, self.model, self.dimensions)

    def build(self) -> VectorIndex:
        probe = _probe(self.store)
        main = build_main(self.folder, self._listed_vectors(0, probe.record_id), self.dimensions)
        return VectorIndex.empty(self.folder, self.model, self.dimensions).with_main(main).save(probe)

    def _catch_up(self, snapshot: VectorIndex) -> VectorIndex:
        probe = _probe(self.store)
        synced = snapshot.synced
        if probe.record_id > synced.record_id:
            for keys, vectors in self._listed_vectors(synced.record_id, probe.record_id):
                snapshot = snapshot.changed(add=(keys, vectors))
            snapshot = snapshot.changed(remove=np.array(self._superseded(synced.record_id, probe.record_id)))
        if probe.runs != synced.runs:
            snapshot = self._reconcile(snapshot)
        snapshot = snapshot.save(probe)
        if len(snapshot.delta_keys) > DELTA_LIMIT or len(snapshot.removed) > DELTA_LIMIT:
            if len(snapshot) < CHILD_BUILD_MIN:
                return self.merge(snapshot)
            _in_child(self.store.url, self.folder, "merge")
            return VectorIndex.load(self.folder, self.model, self.dimensions)
        return snapshot

    def _reconcile(self, snapshot: VectorIndex) -> VectorIndex:
        """Make the index's keys the listed records' ids (paths went missing, came back, changed content).
        First the count and sum of the listed ids, through their index: when both match the index's keys
        (a run that only added records), there is nothing to compare id by id."""
        live = snapshot.live_keys()
        with self.store.engine.connect() as connection:
            count, total = connection.exec_driver_sql(
                f"SELECT count(*), sum(r.id) FROM record r WHERE {SEARCHABLE}"
            ).one()
            if (count, int(total or 0)) == (len(live), int(live.sum())):
                return snapshot
            cursor = connection.exec_driver_sql(f"SELECT r.id FROM record r WHERE {SEARCHABLE}").cursor
            listed = np.array([row[0] for row in cursor.fetchall()], np.int64)
        listed.sort()
        snapshot = snapshot.changed(remove=np.setdiff1d(live, listed, assume_unique=True))
        missing = np.setdiff1d(listed, live, assume_unique=True)
        for start in range(0, len(missing), BATCH):
            keys, vectors = self._vectors(missing[start : start + BATCH].tolist())
            snapshot = snapshot.changed(add=(keys, vectors))
        return snapshot

    def merge(self, snapshot: VectorIndex) -> VectorIndex:
        """Fold the saved snapshot's delta and removals into a new main index; build a new one instead
        once the collection has outgrown the cells it was trained for (4x)."""
        if snapshot.main is None or len(snapshot) > 4 * max(snapshot.main.trained_for, 1_000):
            return self.build()
        return snapshot.with_main(merge_main(snapshot)).save(snapshot.synced)

    # ---- reading the database -------------------------------------------------------------------

    def _listed_vectors(self, after_id: int, up_to_id: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(keys, vectors) of the listed records with after_id < id <= up_to_id, in batches; records
        with no stored embedding are embedded (and the embedding saved) on the way."""
        while after_id < up_to_id:
            with self.store.engine.connect() as connection:
                rows = connection.execute(_LISTED_VECTORS, {"after": after_id, "up_to": up_to_id, "n": BATCH}).all()
            if not rows:
                break
            after_id = rows[-1][0]
            stored = [(record_id, vector) for record_id, vector in rows if vector is not None]
            keys = np.array([record_id for record_id, _ in stored], np.int64)
            vectors = np.frombuffer(b"".join(vector for _, vector in stored), np.float32)
            yield keys, vectors.reshape(len(stored), self.dimensions)
            unembedded = [record_id for record_id, vector in rows if vector is None]
            if unembedded:
                yield embed_records(self.store, unembedded)

    def _vectors(self, record_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored embeddings of these listed records; the ones without are embedded here."""
        with self.store.engine.connect() as connection:
            stored = connection.execute(_STORED_VECTORS, {"ids": record_ids}).all()
        found = {record_id for record_id, _ in stored}
        keys = np.array([record_id for record_id, _ in stored], np.int64)
        vectors = np.frombuffer(b"".join(vector for _, vector in stored), np.float32).reshape(-1, self.dimensions)
        unembedded = [record_id for record_id in record_ids if record_id not in found]
        if unembedded:
            new_keys, new_vectors = embed_records(self.store, unembedded)
            keys, vectors = np.concatenate([keys, new_keys]), np.concatenate([vectors, new_vectors])
        return keys, vectors.reshape(len(keys), self.dimensions)

    def _superseded(self, after_id: int, up_to_id: int) -> list[int]:
        """Older records of the images that got new records in (after_id, up_to_id] and are no longer listed."""
        with self.store.engine.connect() as connection:
            return [row[0] for row in connection.execute(_SUPERSEDED, {"after": after_id, "up_to": up_to_id})]


def embed_records(store: Store, record_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Embed these records' search text (for records stored without an embedding) and save it.
    Failed records, which have no search text, are skipped."""
    from visextract.local_models.embedder import EMBEDDING_MODEL, embed_texts
    from visextract.schemas.evidence import ToolEvidence
    from visextract.schemas.search_text import search_segments
    from visextract.store.export import export_dicts
    from visextract.tools.registry import TOOL_SPECS

    todo = []
    for item in export_dicts(store, with_ids=True, record_ids=record_ids):
        if item["status"] == "failed":
            continue
        tools = {
            name: [TOOL_SPECS[name].result_type.model_validate(r) for r in results]
            for name, results in item["tools"].items()
            if name in TOOL_SPECS
        }
        todo.append((item["record_id"], search_segments(item["data"], ToolEvidence(tools))))
    vectors = embed_texts(["\n".join(segments) for _, segments in todo])
    try:
        for (record_id, segments), vector in zip(todo, vectors, strict=True):
            store.save_embedding(record_id, EMBEDDING_MODEL, segments, vector.tobytes())
    except DBAPIError as exc:  # e.g. a read-only database: the index still gets the vectors
        log.warning("could not save search embeddings in %s: %s", store.safe_url, str(exc.orig).strip().splitlines()[0])
    return np.array([record_id for record_id, _ in todo], np.int64), vectors


def _probe(store: Store) -> SyncPoint:
    """What the index must have read to be current: two index lookups and a glance at the small run table."""
    with store.engine.connect() as connection:
        highest = connection.exec_driver_sql("SELECT max(id) FROM record").scalar()
        runs = connection.exec_driver_sql("SELECT count(*), max(id), max(finished_at) FROM run").one()
    return SyncPoint(int(highest or 0), json.dumps([str(value) for value in runs]))


_indexes: dict[tuple[str, Path | None], SearchIndex] = {}
_indexes_lock = threading.Lock()


def search_index(store: Store, index_dir: Path | None = None) -> SearchIndex:
    """This process's handle on the index of `store`'s database (one per database and `index_dir`,
    which defaults to the VISEXTRACT_INDEX_DIR setting, read once)."""
    from visextract.config import Settings

    with _indexes_lock:
        index = _indexes.get((store.url, index_dir))
        if index is None or index.store is not store:
            folder = index_folder(store.url, index_dir if index_dir is not None else Settings().index_dir)
            index = _indexes[(store.url, index_dir)] = SearchIndex(store, folder)
        return index


# ---- building in a child process ----------------------------------------------------------------------


def _in_child(url: str, folder: Path, action: str) -> None:
    """Build or merge the main index in `python -m visextract.store.search_index`: building it for a
    large database takes more memory than a search process should keep. The caller holds the folder lock."""
    command = [sys.executable, "-m", "visextract.store.search_index", action, str(folder)]
    done = subprocess.run(command, input=url, text=True, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise StoreError(f"could not {action} the search index in {folder} (exit code {done.returncode})")


def _main(argv: list[str]) -> int:
    """`python -m visextract.store.search_index build|merge FOLDER`, the database URL on stdin."""
    action, folder = argv[0], Path(argv[1])
    index = SearchIndex(Store(sys.stdin.read().strip(), create=False), folder)
    if action == "build":
        index.build()
    else:
        index.merge(VectorIndex.load(folder, index.model, index.dimensions))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
