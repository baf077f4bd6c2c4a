"""Search at scale: the on-disk vector index stays consistent with the database (re-extraction, deletion,
damage, incremental catch-up, two processes at once), and typed-view filters use their field indexes.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, text

import visextract as vx
from visextract.local_models.embedder import EMBEDDING_MODEL, embed_texts
from visextract.query import open_store
from visextract.schemas.base import RecordSchema
from visextract.schemas.scene import SCENE
from visextract.schemas.user_schemas import schema_from_model
from visextract.store import Store
from visextract.store import search_index as search_index_module
from visextract.store.ann_index import STATE_FILE, VectorIndex
from visextract.store.search_index import index_folder, search_index
from visextract.store.store import ImageFacts, RecordDraft

TEXTS = {
    "cat.jpg": "tabby cat: a cat with a striped coat, sitting on a sofa",
    "car.jpg": "sports car: a fast red car on a race track",
    "page.jpg": "a page of printed text, 30 lines: Chapter one. It was a dark night",
    "beach.jpg": "a dog running on a sandy beach by the sea",
    "coffee.jpg": "espresso: a small cup of strong black coffee on a saucer",
    "mountain.jpg": "alp: a snowy mountain peak above a valley",
}


@pytest.fixture(autouse=True)
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test keeps its index in its own folder (as VISEXTRACT_INDEX_DIR would), never in ~/.cache."""
    folder = tmp_path / "indexes"
    monkeypatch.setenv("VISEXTRACT_INDEX_DIR", str(folder))
    return folder


def save_records(url: str, texts: dict[str, str], embed: bool = True, new_run: bool = True) -> dict[str, int]:
    """Save records as the extraction's persist step does (record first, then its embedding), in a new
    run unless `new_run` is False (as a review's new version would be); returns {file name: record id}.
    The same file name again makes a new record of the same image."""
    store = Store(url)
    if new_run:
        store.start_run(SCENE, {}, {})
    ids = {}
    vectors = embed_texts(list(texts.values()))
    for (name, search_text), vector in zip(texts.items(), vectors, strict=True):
        sha = hashlib.sha256(name.encode()).hexdigest()
        saved = store.save(
            RecordDraft(
                path=f"/photos/{name}", schema_name="scene", schema_version=SCENE.version, status="ok",
                image=ImageFacts(sha256=sha, size_bytes=1, width=1, height=1, format="JPEG"),
                data={"labels": [search_text.split(":")[0]], "face_count": 0, "text": None, "dominant_colors": []},
            )
        )  # fmt: skip
        if embed:
            store.save_embedding(saved.record_id, EMBEDDING_MODEL, [search_text], vector.tobytes())
        ids[name] = saved.record_id
    store.close()
    return ids


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text embedded from now on (the embedder itself still runs)."""
    texts: list[str] = []

    def counting_embed_texts(batch: list[str], batch_size: int = 64) -> np.ndarray:
        texts.extend(batch)
        return embed_texts(batch, batch_size)

    monkeypatch.setattr("visextract.local_models.embedder.embed_texts", counting_embed_texts)
    return texts


def on_disk(url: str) -> VectorIndex:
    """The index as a new process finds it in its folder."""
    return VectorIndex.load(index_folder(url, Path(os.environ["VISEXTRACT_INDEX_DIR"])), EMBEDDING_MODEL, 384)


def current_ids(url: str) -> set[int]:
    with open_store(url).engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT id FROM record WHERE is_current"))}


def snapshot(url: str) -> VectorIndex:
    return search_index(open_store(url)).current()


def found(url: str, query: str, k: int = 1) -> list[str]:
    return [Path(hit.path).name for hit in vx.search(query, db=url, k=k)]


def test_search_finds_records_through_the_index_and_ranks_them_exactly(any_db):
    ids = save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]
    assert found(any_db, "a cup of coffee") == ["coffee.jpg"]
    hits = vx.search("a dog at the seaside", db=any_db, k=len(TEXTS))
    stored = {name: embed_texts([TEXTS[name]])[0] for name in TEXTS}
    query = embed_texts(["a dog at the seaside"])[0]
    expected = sorted(TEXTS, key=lambda name: -float(stored[name] @ query))
    assert [Path(h.path).name for h in hits] == expected  # every record, in exact cosine order
    assert [h.score for h in hits] == pytest.approx([float(stored[n] @ query) for n in expected], abs=1e-4)
    assert hits[0].record_id == ids["beach.jpg"] and hits[0].snippet == TEXTS["beach.jpg"]
    assert sorted(snapshot(any_db).live_keys().tolist()) == sorted(ids.values())


def test_a_re_extracted_record_is_found_by_its_new_id_and_the_old_one_never_returns(any_db):
    first = save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]  # the index is built and cached
    # the same image gets a new record outside any run, as a review's new version does
    second = save_records(any_db, {"cat.jpg": "tabby cat: a cat asleep on a red sofa"}, new_run=False)
    assert first["cat.jpg"] not in snapshot(any_db).live_keys()  # the catch-up itself drops the old record
    hits = vx.search("a kitten on the couch", db=any_db, k=len(TEXTS))
    assert [h.record_id for h in hits if h.path.endswith("cat.jpg")] == [second["cat.jpg"]]
    assert {h.record_id for h in hits} == current_ids(any_db)
    assert hits[0].snippet == "tabby cat: a cat asleep on a red sofa"
    keys = snapshot(any_db).live_keys().tolist()
    assert first["cat.jpg"] not in keys and second["cat.jpg"] in keys
    # a fresh process reads the index from disk and agrees
    assert first["cat.jpg"] not in on_disk(any_db).live_keys()


def test_real_photos_re_extracted_are_found_by_their_new_records_only(any_db, photos):
    extractor = vx.Extractor(db=any_db, tools=["classifier"], llm=None)
    extractor.run(photos)
    (before,) = vx.search("a cat", db=any_db, k=1)
    assert before.path.endswith("chelsea.png")
    extractor.run(photos, force=True)  # every image gets a new record; the old ones become history
    hits = vx.search("a cat", db=any_db, k=5)
    assert hits[0].path.endswith("chelsea.png") and hits[0].record_id != before.record_id
    assert {hit.record_id for hit in hits} <= current_ids(any_db) and len(hits) == 5
    assert before.record_id not in snapshot(any_db).live_keys()


def test_a_photo_whose_file_is_gone_leaves_search_and_comes_back_with_it(any_db, photos, tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.jpg", "astronaut.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    extractor = vx.Extractor(db=any_db, tools=["classifier"], llm=None)
    extractor.run(folder)
    assert found(any_db, "a cat") == ["chelsea.png"]
    cat = (folder / "chelsea.png").read_bytes()
    (folder / "chelsea.png").unlink()
    extractor.run(folder)  # marks the vanished path missing
    assert "chelsea.png" not in found(any_db, "a cat", k=3)
    with_missing = vx.search("a cat", db=any_db, k=1, include_missing=True)
    assert Path(with_missing[0].path).name == "chelsea.png"
    (folder / "chelsea.png").write_bytes(cat)
    extractor.run(folder)  # found again: listed again, and back in the index
    assert found(any_db, "a cat") == ["chelsea.png"]
    assert set(snapshot(any_db).live_keys().tolist()) == current_ids(any_db)


def test_a_deleted_record_never_shows_and_is_dropped_from_the_index(any_db):
    ids = save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]
    with Store(any_db).engine.begin() as connection:  # deleted behind visextract's back, e.g. with an SQL tool
        connection.execute(text("DELETE FROM record_embedding WHERE record_id = :id"), {"id": ids["cat.jpg"]})
        connection.execute(text("DELETE FROM record WHERE id = :id"), {"id": ids["cat.jpg"]})
    hits = vx.search("a kitten on the couch", db=any_db, k=3)
    assert "cat.jpg" not in [Path(h.path).name for h in hits] and len(hits) == 3
    assert ids["cat.jpg"] not in on_disk(any_db).live_keys()  # the stale key was dropped for every process


def test_search_fills_k_when_most_candidates_are_stale(any_db):
    many = {f"cat{i}.jpg": f"tabby cat number {i}: a striped cat on a sofa" for i in range(60)}
    ids = save_records(any_db, {**many, **TEXTS})
    assert found(any_db, "a kitten on the couch")[0].startswith("cat")
    with Store(any_db).engine.begin() as connection:  # 60 of the best candidates stop being current
        stale = text("UPDATE record SET is_current = false WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        connection.execute(stale, {"ids": [ids[name] for name in many]})
    hits = vx.search("a kitten on the couch", db=any_db, k=5)
    assert len(hits) == 5 and {Path(h.path).name for h in hits} <= set(TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]


@pytest.mark.parametrize(
    "damage",
    [
        "delete the folder",
        "garbage state",
        "truncate the main index",
        "garbage in the main index",
        "garbage in its second half",
        "cut the delta",
    ],
)
def test_a_missing_or_damaged_index_is_rebuilt_and_search_stays_right(any_db, damage):
    save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]  # the main index is built
    save_records(any_db, {"rocket.jpg": "a rocket on the launch pad"})  # so the delta holds a vector too
    expected = [Path(h.path).name for h in vx.search("a dog at the seaside", db=any_db, k=7)]
    assert len(expected) == 7 and len(snapshot(any_db).delta_keys) == 1
    folder = index_folder(any_db, Path(os.environ["VISEXTRACT_INDEX_DIR"]))
    state = snapshot(any_db)
    main = folder / state.main.file
    delta = folder / f"delta-{state.snapshot_id}.npz"
    # the damage happens while no process has the index open (changing a mapped file in place under a
    # running process is beyond repair: the kernel may kill it; visextract itself never does that)
    del state
    search_index_module._indexes.clear()
    gc.collect()
    if damage == "delete the folder":
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    elif damage == "garbage state":
        (folder / STATE_FILE).write_bytes(b"\x00{not json")
    elif damage == "truncate the main index":
        main.write_bytes(main.read_bytes()[: main.stat().st_size // 2])
    elif damage == "garbage in the main index":  # same size, so only reading it can tell
        size = main.stat().st_size
        main.write_bytes(main.read_bytes()[:64] + np.random.default_rng(0).bytes(size - 64))
    elif damage == "garbage in its second half":  # the header still reads, the cells do not
        size = main.stat().st_size
        main.write_bytes(main.read_bytes()[: size // 2] + np.random.default_rng(0).bytes(size - size // 2))
    else:  # cut the delta
        delta.write_bytes(delta.read_bytes()[:100])
    for moment in ("next search", "after a run"):
        if moment == "after a run":
            _change_database(any_db)  # the index is read from its folder again and caught up
        assert [Path(h.path).name for h in vx.search("a dog at the seaside", db=any_db, k=7)] == expected
        assert found(any_db, "a rocket launch") == ["rocket.jpg"]
    assert len(on_disk(any_db)) == len(TEXTS) + 1  # loads cleanly again


def test_new_records_are_added_incrementally_without_embedding_anything(any_db, request):
    first = save_records(any_db, TEXTS)
    built = snapshot(any_db)
    assert len(built) == len(TEXTS)
    new = save_records(any_db, {f"extra{i}.jpg": f"a photo of a lighthouse number {i}" for i in range(5)})
    embedded = request.getfixturevalue("embedded")
    assert found(any_db, "a lighthouse")[0].startswith("extra")
    after = snapshot(any_db)
    assert after.main.file == built.main.file  # the main index was not rebuilt
    assert sorted(after.delta_keys.tolist()) == sorted(new.values())  # only the new records were added
    assert embedded == ["a lighthouse"]  # stored embeddings are used; only the query was embedded
    assert set(after.live_keys().tolist()) == set(first.values()) | set(new.values())


def test_a_record_stored_without_embedding_is_embedded_once_by_search(any_db, embedded):
    save_records(any_db, TEXTS)
    assert found(any_db, "a cup of coffee") == ["coffee.jpg"]
    late = save_records(any_db, {"ship.jpg": "a sailing ship on the open sea"}, embed=False)  # a crashed run
    embedded.clear()
    assert found(any_db, "a boat with sails") == ["ship.jpg"]
    assert len(embedded) == 2 and "sailing ship" in embedded[0]  # the record, then the query
    with Store(any_db).engine.connect() as connection:
        saved = text("SELECT count(*) FROM record_embedding WHERE record_id = :id")
        assert connection.execute(saved, {"id": late["ship.jpg"]}).scalar() == 1
    search_index_module._indexes.clear()
    assert found(any_db, "a boat with sails") == ["ship.jpg"]
    assert len(embedded) == 3  # a new process embeds only its query


def test_many_changes_are_merged_into_a_new_main_index(any_db, monkeypatch):
    monkeypatch.setattr(search_index_module, "DELTA_LIMIT", 3)
    save_records(any_db, TEXTS)
    built = snapshot(any_db).main.file
    save_records(any_db, {f"extra{i}.jpg": f"a photo of a lighthouse number {i}" for i in range(5)})
    merged = snapshot(any_db)
    assert merged.main.file != built and len(merged.delta_keys) == 0 and len(merged.main.keys) == len(TEXTS) + 5
    assert found(any_db, "a lighthouse")[0].startswith("extra") and found(any_db, "a kitten") == ["cat.jpg"]


def test_large_builds_and_merges_run_in_a_child_process(any_db, monkeypatch):
    monkeypatch.setattr(search_index_module, "CHILD_BUILD_MIN", 1)
    monkeypatch.setattr(search_index_module, "DELTA_LIMIT", 3)
    children = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: children.append(a[0][-2]) or real_run(*a, **kw))
    save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]
    save_records(any_db, {f"extra{i}.jpg": f"a photo of a lighthouse number {i}" for i in range(5)})
    assert found(any_db, "a lighthouse")[0].startswith("extra")
    assert children == ["build", "merge"]
    assert len(snapshot(any_db).main.keys) == len(TEXTS) + 5


def test_two_processes_searching_and_adding_at_once_leave_a_consistent_index(any_db):
    save_records(any_db, TEXTS)
    assert found(any_db, "a kitten on the couch") == ["cat.jpg"]
    script = (
        "import sys, visextract as vx\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_search_index import save_records\n"
        "url, tag = sys.argv[1], sys.argv[2]\n"
        "for i in range(6):\n"
        "    save_records(url, {f'{tag}{i}.jpg': f'a painting of a {tag} number {i}'})\n"
        "    assert vx.search(f'a painting of a {tag}', db=url, k=1)[0].path.endswith('.jpg')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    workers = [
        subprocess.Popen([sys.executable, "-c", script, any_db, tag], env=env, stderr=subprocess.PIPE, text=True)
        for tag in ("horse", "tulip")
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read() if worker.stderr else ""
    search_index_module._indexes.clear()
    assert set(on_disk(any_db).live_keys().tolist()) <= current_ids(any_db)
    assert set(snapshot(any_db).live_keys().tolist()) == current_ids(any_db)
    assert found(any_db, "a painting of a horse")[0].startswith("horse")


def test_the_index_lives_next_to_a_sqlite_database_or_in_a_per_url_cache(tmp_path, monkeypatch):
    assert index_folder(f"sqlite:///{tmp_path / 'photos.db'}") == tmp_path / "photos-index"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = index_folder("postgresql+psycopg://me:secret@db.example/photos")
    other = index_folder("postgresql+psycopg://me:secret@db.example/other")
    assert one.parent == tmp_path / "cache" / "visextract" / "search-index" and one != other
    assert "secret" not in str(one)
    assert index_folder("postgresql://db/photos", tmp_path / "mine").parent == tmp_path / "mine"


def test_a_search_process_does_not_import_torch(any_db):
    save_records(any_db, TEXTS)
    code = (
        "import sys, visextract as vx\n"
        f"assert vx.search('a cup of coffee', db={any_db!r}, k=1)[0].path.endswith('coffee.jpg')\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---- typed views: their filters use the field indexes ---------------------------------------------------


class ShelfItem(BaseModel):
    product: str = Field(description="what it is")
    count: int = Field(ge=0)
    price: float | None = None
    in_stock: bool = True
    tags: list[str] = []


def plan(url: str, query: str) -> str:
    """The query plan as text (PostgreSQL: with sequential scans priced out, as on a large table)."""
    with open_store(url).engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {query}"))
        return "\n".join(row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))


def field_index_names(url: str) -> set[str]:
    with open_store(url).engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            rows = connection.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'record'")
        else:
            rows = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {row[0] for row in rows if row[0].startswith("vx_")}


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM scene WHERE face_count > 0",
        "SELECT path, labels FROM scene WHERE face_count = 2 LIMIT 20",
        "SELECT path FROM scene WHERE text = 'OPEN 24 HOURS'",
    ],
)
def test_typed_view_filters_use_the_field_indexes(any_db, query):
    save_records(any_db, TEXTS)
    used = plan(any_db, query)
    field = "face_count" if "face_count" in query else "text"
    names = [name for name in field_index_names(any_db) if f"_{field}_" in name]
    assert len(names) == 1 and names[0] in used, used


def save_shelf_items(url: str, schema: RecordSchema, items: list[dict[str, object]]) -> None:
    store = open_store(url)
    for i, data in enumerate(items):
        store.save(
            RecordDraft(
                path=f"/shelf/{schema.version[:6]}-{i}.jpg", schema_name=schema.name, schema_version=schema.version,
                status="ok", data=data,
                image=ImageFacts(sha256=hashlib.sha256(f"{schema.version}{i}".encode()).hexdigest(), size_bytes=1,
                                 width=1, height=1, format="JPEG"),
            )
        )  # fmt: skip
    if store.dialect == "postgresql":
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE record")  # as autovacuum would, on a table this size


def test_a_user_schema_gets_field_indexes_and_a_changed_schema_replaces_them(any_db):
    store = Store(any_db)
    shelf = schema_from_model(ShelfItem, name="shelf_item")
    store.start_run(shelf, {}, {})
    items = [
        {"product": f"item {i}", "count": i % 7, "price": i / 10, "in_stock": i % 3 == 0, "tags": ["a"]}
        for i in range(300)
    ]
    save_shelf_items(any_db, shelf, items)
    for query, field, expected in [
        ("SELECT count(*) AS n FROM shelf_item WHERE count >= 3", "count", sum(i["count"] >= 3 for i in items)),
        ("SELECT count(*) AS n FROM shelf_item WHERE price < 2.5", "price", sum(i["price"] < 2.5 for i in items)),
        ("SELECT count(*) AS n FROM shelf_item WHERE product = 'item 7'", "product", 1),
        ("SELECT count(*) AS n FROM shelf_item WHERE in_stock = true", "in_stock", sum(i["in_stock"] for i in items)),
    ]:
        (name,) = [n for n in field_index_names(any_db) if f"_{field}_" in n]
        assert name in plan(any_db, query), query
        assert vx.sql(query, db=any_db).rows == [{"n": expected}]
    assert not [n for n in field_index_names(any_db) if "_tags_" in n]  # lists stay unindexed

    class ShelfItemV2(BaseModel):  # count becomes a number; price goes away
        product: str
        count: float
        in_stock: bool = True

    before = field_index_names(any_db)
    shelf_v2 = schema_from_model(ShelfItemV2, name="shelf_item")
    store.start_run(shelf_v2, {}, {})
    save_shelf_items(any_db, shelf_v2, [{"product": "jar", "count": 1.5, "in_stock": False}])
    after = field_index_names(any_db)
    assert not [n for n in after if "_price_" in n]
    count_index = {n for n in after if "_count_" in n}
    assert len(count_index) == 1 and not count_index & before  # rebuilt for the new type
    assert next(iter(count_index)) in plan(any_db, "SELECT path FROM shelf_item WHERE count > 1.4")
    assert {n for n in after if "_product_" in n} == {n for n in before if "_product_" in n}  # kept as is
    rows = vx.sql("SELECT product, count FROM shelf_item WHERE count > 1.4 ORDER BY count", db=any_db).rows
    assert rows[0] == {"product": "jar", "count": 1.5} and len(rows) == sum(i["count"] >= 2 for i in items) + 1


def test_a_value_of_another_type_reads_as_null_and_never_fails_a_write(any_db):
    store = Store(any_db)
    shelf = schema_from_model(ShelfItem, name="shelf_item")
    store.start_run(shelf, {}, {})
    odd = {"product": ["not", "text"], "count": "lots", "price": "cheap", "in_stock": "yes"}  # an older version's
    save_shelf_items(any_db, shelf, [{"product": "mug", "count": 2, "price": 1.5, "in_stock": True}, odd])
    rows = vx.sql("SELECT count, price, in_stock FROM shelf_item ORDER BY path", db=any_db).rows
    assert rows[0] == {"count": 2, "price": 1.5, "in_stock": True}
    assert rows[1]["count"] in (None, 0) and rows[1]["price"] in (None, 0.0)  # SQLite casts leniently to 0


def _change_database(url: str) -> None:
    """Start (and finish) an empty run, as `visextract run` would: the index then re-reads its files."""
    store = Store(url)
    run_id = store.start_run(SCENE, {}, {})
    store.finish_run(run_id, {}, 0.0, "finished")
