"""Ctrl-C and dead runs, with real `visextract run` processes and real signals (DESIGN.md, "Run semantics"):
the first Ctrl-C finishes and saves the images being computed, the second aborts at once, a Ctrl-C while
models load stops at once, and a run whose process died shows as interrupted, not running."""

from __future__ import annotations

import signal
import time

from sqlalchemy import text
from test_crash_safety import assert_consistent, count_records, make_distinct_photos, visextract, wait_for_records

from visextract.store import Store

TOOLS = "classifier,faces,ocr,colors"


def run_rows(url: str) -> list:
    store = Store(url)
    try:
        return store.recent_runs(5)
    finally:
        store.close()


def stored_statuses(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return [s for (s,) in connection.execute(text("SELECT status FROM record WHERE is_current"))]
    finally:
        store.close()


def wait_for_run_row(url: str, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if run_rows(url):
                return
        except Exception:
            pass  # the database is not there yet
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)


def test_first_ctrl_c_saves_the_images_being_computed_and_reports_them(db_url, tmp_path):
    paths = make_distinct_photos(tmp_path / "photos", 30)  # more than the 16 images in flight
    run = visextract("run", tmp_path / "photos", "--db", db_url, "--tools", TOOLS, "--batch-size", "2")
    wait_for_records(db_url, 1, run)
    run.send_signal(signal.SIGINT)
    at_signal = count_records(db_url)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    stored = count_records(db_url)
    # images whose tools had started (at least the batch-mates of the first saved image) were finished
    assert stored > at_signal, (at_signal, stored)
    assert stored < 30, "the run should have stopped taking new images"
    assert f"{stored} processed" in out and "interrupted" in out and "Traceback" not in err
    assert f" {stored}/30 " in err  # the progress bar counts the images done, not those left for the next run
    assert stored_statuses(db_url) == ["ok"] * stored  # nothing half-done was stored as failed
    assert run_rows(db_url)[0].status == "interrupted"
    rerun = visextract("run", tmp_path / "photos", "--db", db_url, "--tools", TOOLS)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and f"{30 - stored} processed" in out and f"{stored} skipped" in out, err
    assert_consistent(db_url, paths)


def test_second_ctrl_c_aborts_at_once_and_keeps_what_was_saved(db_url, tmp_path):
    make_distinct_photos(tmp_path / "photos", 12)
    run = visextract("run", tmp_path / "photos", "--db", db_url, "--tools", TOOLS, "--batch-size", "2")
    wait_for_records(db_url, 1, run)
    run.send_signal(signal.SIGINT)
    before_abort = count_records(db_url)
    time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    aborted_at = time.monotonic()
    _out, err = run.communicate(timeout=60)
    took = time.monotonic() - aborted_at
    assert run.returncode == 130 and "aborted" in err and "Traceback" not in err
    assert took < 4, f"the second Ctrl-C took {took:.1f} s to exit"
    assert count_records(db_url) >= before_abort
    (aborted,) = run_rows(db_url)
    saved = stored_statuses(db_url)  # every record here was made by this run
    assert aborted.status == "interrupted"
    assert (aborted.processed, aborted.failed) == (
        sum(status in ("ok", "needs_review") for status in saved),
        saved.count("failed"),
    )
    assert aborted.processed >= 1 and aborted.seconds > 0  # what it saved, and how long it ran


def test_ctrl_c_while_models_load_stops_at_once(db_url, tmp_path):
    make_distinct_photos(tmp_path / "photos", 6)
    run = visextract("run", tmp_path / "photos", "--db", db_url, "--tools", TOOLS)
    wait_for_run_row(db_url, run)  # the run has started: its models are loading now
    time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    out, err = run.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert run.returncode == 130 and "interrupted" in out and "Traceback" not in err
    assert took < 4, f"stopping took {took:.1f} s: it waited for the models to load"
    assert count_records(db_url) == 0


def test_a_run_whose_process_died_shows_as_interrupted_not_running(db_url, tmp_path, monkeypatch):
    make_distinct_photos(tmp_path / "photos", 30)
    monkeypatch.setenv("VISEXTRACT_RUN_HEARTBEAT_S", "0.3")
    run = visextract("run", tmp_path / "photos", "--db", db_url, "--tools", TOOLS, "--batch-size", "2")
    wait_for_records(db_url, 1, run)
    time.sleep(1.0)  # longer than the lease (3 heartbeats): only a renewed heartbeat keeps it "running"
    assert run_rows(db_url)[0].status == "running"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    time.sleep(1.5)
    assert run_rows(db_url)[0].status == "interrupted"


def test_on_stop_an_image_is_finished_only_if_its_work_started_on_loaded_models():
    """The rule behind the first Ctrl-C, on real batchers: finish an image whose tool work has started
    while its other tools' models are loaded; drop one that has not started, or that waits for a model
    still loading (that is what lets Ctrl-C stop at once during loading)."""
    import threading

    from visextract.agents.extraction_nodes import _drop_unfinishable
    from visextract.tools.batcher import Batcher

    release = threading.Event()

    def slow(items):
        release.wait(10)
        return list(items)

    loading = threading.Event()
    busy = Batcher("busy", slow, batch_size=1)
    warm = Batcher("warm", lambda items: list(items), batch_size=1, warm_up=lambda: None)
    cold = Batcher("cold", lambda items: list(items), batch_size=1, warm_up=lambda: loading.wait(10))
    try:
        warm.start_warm_up()
        cold.start_warm_up()
        assert warm.warmed.wait(5) and not cold.warmed.is_set()
        running = busy.submit("being computed")
        deadline = time.monotonic() + 5
        while not running.running():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued_behind = busy.submit("queued")
        assert not _drop_unfinishable([(busy, running), (busy, queued_behind)])  # its work started: finish it
        untouched = busy.submit("not started")
        assert _drop_unfinishable([(busy, untouched)]) and untouched.cancelled()  # nothing started: drop it
        waits_for_loading = cold.submit("needs the cold model")
        assert _drop_unfinishable([(busy, running), (cold, waits_for_loading)])  # a model still loading: drop
        assert waits_for_loading.cancelled() and not running.cancelled()
    finally:
        release.set()
        loading.set()
        for batcher in (busy, warm, cold):
            batcher.close()
