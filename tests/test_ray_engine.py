"""`run --engine ray` (DESIGN.md, "Ray engine") on a local Ray instance with 2 CPUs, started once for this
module: the same records as the local engine, a worker killed mid-batch loses and duplicates nothing, an
interrupted driver (Ctrl-C, kill -9) is resumed by the next run, the LLM budget is global across workers,
and the usage errors are one line before any work."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from openai_test_server import error_reply, json_reply
from sqlalchemy import text
from test_crash_safety import assert_consistent, count_records, make_distinct_photos, visextract, wait_for_records

import visextract as vx
from visextract.config import Settings
from visextract.engines.ray import worker_shape
from visextract.errors import UsageError
from visextract.store import Store
from visextract.store.export import export_dicts

CAR = {"type": "car", "license": "KA 01 AB 1234", "make": "Toyota", "model": "Corolla", "color": "brown"}
EXAMPLES = Path(__file__).parent.parent / "examples"
WORKER_TITLE = "MapBatches(ExtractBatch)"  # in the process title Ray gives each ExtractBatch actor


@pytest.fixture(scope="module")
def ray_address() -> str:
    """A local Ray instance (2 CPUs) for this module; other processes join it at the returned address."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def exported(url: str) -> list[dict]:
    store = Store(url)
    try:
        return sorted(export_dicts(store), key=lambda record: record["path"])
    finally:
        store.close()


def counts(summary: vx.RunSummary) -> tuple[int, int, int]:
    return summary.processed, summary.skipped, summary.failed


def all_records(url: str) -> int:
    """Records of every version (history included)."""
    return len(record_rows(url)) if count_records(url) else 0


def record_rows(url: str) -> list[tuple]:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return list(connection.execute(text("SELECT subject, version, status, run_id FROM record ORDER BY id")))
    finally:
        store.close()


def worker_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if WORKER_TITLE.encode() in title and title.startswith(b"ray::"):
            pids.append(int(entry))
    return pids


# ---- the same records as the local engine ------------------------------------------------------------


def test_the_records_equal_the_local_engines_and_a_rerun_does_nothing(ray_address, tmp_path):
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    (folder / "broken.jpg").write_text("this is not a photo\n")
    local_db, ray_db = f"sqlite:///{tmp_path / 'local.db'}", f"sqlite:///{tmp_path / 'ray.db'}"

    local = vx.Extractor(db=local_db, llm=None).run(folder)
    on_ray = vx.Extractor(db=ray_db, llm=None, engine="ray").run(folder)

    assert (
        (on_ray.processed, on_ray.skipped, on_ray.failed) == (local.processed, local.skipped, local.failed) == (8, 0, 1)
    )
    assert on_ray.failures == local.failures and "not an image file" in on_ray.failures[0][1]
    assert on_ray.found == local.found == 9 and not on_ray.interrupted
    records = exported(ray_db)
    assert records == exported(local_db)  # data, tools, provenance, status, errors: everything but ids
    assert {record["status"] for record in records} == {"ok", "failed"}

    before = record_rows(ray_db)
    again = vx.Extractor(db=ray_db, llm=None, engine="ray").run(folder)
    local_again = vx.Extractor(db=local_db, llm=None).run(folder)
    assert (again.processed, again.skipped, again.failed) == (
        local_again.processed,
        local_again.skipped,
        local_again.failed,
    )
    assert again.processed == 0 and record_rows(ray_db) == before  # idempotent: no new record


# ---- workers that die, drivers that are stopped ----------------------------------------------------------


def run_in_thread(extractor: vx.Extractor, *paths: Path, **options: object) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = extractor.run(*paths, **options)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def kill_a_worker_once_records_appear(url: str, thread: threading.Thread, at_least: int) -> int:
    """SIGKILL one ExtractBatch actor while the run is saving records; returns the records saved before."""
    deadline = time.monotonic() + 300
    while all_records(url) < at_least:
        assert thread.is_alive() and time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)
    (pid, *_) = worker_pids()
    os.kill(pid, signal.SIGKILL)
    return all_records(url)


@pytest.mark.parametrize(("backend", "force"), [("sqlite", False), ("postgres", True)])
def test_a_killed_worker_loses_nothing_and_duplicates_nothing(ray_address, tmp_path, request, backend, force):
    """Two workers write the database from two processes; one is killed mid-batch, Ray restarts it and
    retries its batch: the images it saved are not redone, also under --force (where only "this run made
    it already" tells them apart), and the ones it was computing are done by the retry."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'killed.db'}"
    else:
        from conftest import new_postgres_database

        url, drop = new_postgres_database(request.getfixturevalue("postgres_server"))
        request.addfinalizer(drop)
    paths = make_distinct_photos(tmp_path / "photos", 24)
    extractor = vx.Extractor(db=url, tools=["classifier", "colors"], llm=None, engine="ray", workers=2)

    thread, result = run_in_thread(extractor, tmp_path / "photos", force=force)
    saved_before_kill = kill_a_worker_once_records_appear(url, thread, 1)
    thread.join()
    summary = result["summary"]
    assert saved_before_kill < 24  # killed mid-run
    assert summary.processed + summary.skipped == 24 and summary.failed == 0  # its batch was retried
    assert_consistent(url, paths)
    assert [version for _, version, _, _ in record_rows(url)] == [1] * 24  # nothing was made twice


def test_an_interrupted_driver_is_resumed_by_the_next_run(ray_address, tmp_path):
    """Ctrl-C finishes and saves what the workers are computing (exit 130). kill -9 of a driver that started
    its own Ray instance (no --ray-address) takes its workers down with it. The next run completes the
    folder, each image once."""
    db = f"sqlite:///{tmp_path / 'resume.db'}"
    paths = make_distinct_photos(tmp_path / "photos", 32)  # more than a worker's 16 images in flight
    run_args = ("run", tmp_path / "photos", "--db", db, "--tools", "classifier,colors", "--engine", "ray")
    join = ("--ray-address", ray_address)

    run = visextract(*run_args, *join)
    wait_for_records(db, 1, run, timeout=300)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)
    stored = count_records(db)
    assert run.returncode == 130 and "interrupted" in out and f"{stored} processed" in out, err
    assert 0 < stored < 32 and "Traceback" not in err

    run = visextract(*run_args)  # starts a Ray instance of its own
    wait_for_records(db, stored + 1, run, timeout=300)
    workers = [pid for pid in worker_pids() if is_descendant(pid, run.pid)]
    assert workers, "the driver's own Ray instance runs its workers"
    run.kill()
    run.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the killed driver's Ray workers kept running"
        time.sleep(0.5)

    rerun = visextract(*run_args, *join)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0 and "Traceback" not in err, err
    processed, skipped = summary_counts(out)
    assert processed + skipped == 32 and skipped > stored  # what the killed run saved was kept
    assert_consistent(db, paths)
    runs = Store(db).recent_runs(3)
    assert (runs[0].status, runs[2].status) == ("finished", "interrupted")


def summary_counts(out: str) -> tuple[int, int]:
    """(processed, skipped) from the summary line."""
    match = re.search(r"(\d+) processed, .*?(\d+) skipped", out)
    assert match, out
    return int(match[1]), int(match[2])


def is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
        if pid == ancestor:
            return True
    return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- the LLM limits are the run's, not each worker's -------------------------------------------------------


def test_the_llm_budget_and_concurrency_hold_across_workers(ray_address, server, photos, tmp_path):
    """Two workers: the budget stops new calls everywhere once the run has spent it, and no more calls are
    in flight at once than --concurrency allows."""
    server.fixed_latency = 0.3
    server.default_reply = json_reply(CAR, completion_tokens=100)
    settings = Settings(db=f"sqlite:///{tmp_path / 'budget.db'}", llm_timeout=5, llm_retry_initial_wait=0.05)
    one_call = (800 * 0.15 + 100 * 0.60) / 1e6
    ex = vx.Extractor(
        settings=settings, schema="vehicle", tools=["colors"], llm="openai", llm_model="gpt-4o-mini",
        budget_usd=2.5 * one_call, concurrency=2, engine="ray", workers=2,
    )  # fmt: skip
    folder = tmp_path / "cars"
    make_distinct_photos(folder, 12)
    summary = ex.run(folder)
    # 3 calls spend the budget; a call already waiting for its slot may still go: one per worker at most
    assert 3 <= server.request_count <= 4
    assert server.max_in_flight <= 2
    assert summary.budget_skipped == 12 - server.request_count
    assert summary.llm_cost_usd == pytest.approx(server.request_count * one_call)
    assert summary.needs_review >= summary.budget_skipped  # (a cross-check may flag an answered one too)


def test_one_workers_spend_counts_against_every_workers_budget(ray_address):
    """The gate of each worker, over the run's shared state: what one spent stops the other."""
    import asyncio

    from visextract.agents.llm.gate import BudgetSpentError
    from visextract.engines.ray import SharedBudgetGate, SharedRunState

    state = SharedRunState.remote()
    first, second = SharedBudgetGate(1, 1.0, state), SharedBudgetGate(1, 1.0, state)

    async def two_workers() -> None:
        async with first.slot():
            first.add_cost(0.6)
        async with second.slot():  # the run has spent 0.6 of 1.0: allowed
            second.add_cost(0.6)
        await second.report()  # (a worker's costs reach the shared state within milliseconds)
        with pytest.raises(BudgetSpentError):  # this worker spent 0.6 itself, but the run has spent 1.2
            async with first.slot():
                pass
        await first.report()

    asyncio.run(two_workers())
    usage = ray.get(state.usage.remote())
    assert usage["spent_usd"] == pytest.approx(1.2) and usage["skipped_for_budget"] == 1


def test_a_run_wide_error_in_one_worker_stops_them_all_with_one_line(ray_address, server, tmp_path, cli):
    """The server refuses the API key: the worker that hears it first stops the run (the others stop taking
    images), nothing is stored, and the error is the local engine's one line."""
    server.default_reply = error_reply(401, "Incorrect API key provided")
    make_distinct_photos(tmp_path / "cars", 12)
    db = f"sqlite:///{tmp_path / 'fatal.db'}"
    result = cli("run", tmp_path / "cars", "--db", db, "--schema", "vehicle", "--llm", "openai", "--tools", "colors",
                 "--concurrency", "2", "--engine", "ray", "--workers", "2")  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "401" in line and "OPENAI_API_KEY" in line
    assert server.request_count <= 2  # one call per worker at most: every worker stopped
    assert count_records(db) == 0 and Store(db).recent_runs(1)[0].status == "failed"


def test_a_worker_whose_node_lacks_a_model_reports_it_as_the_runs_error(tmp_path, photos):
    """The driver checked the model, but a node may not have it: the worker returns the one-line reason
    with its first batch (the driver then stops the run) instead of dying, which Ray would retry forever."""
    import pickle

    import pyarrow as pa

    from visextract.engines.ray import ExtractBatch

    plan = vx.Extractor(db=f"sqlite:///{tmp_path / 'x.db'}", tools=["classifier"], llm=None).plan
    missing = dataclasses.replace(
        plan, tool_options=dataclasses.replace(plan.tool_options, models={"classifier": str(tmp_path / "gone")})
    )
    rows = ExtractBatch(missing, state=None)(pa.table({"path": [str(photos / "coffee.jpg")]})).to_pylist()
    (row,) = rows
    assert row["status"] == "cancelled" and "gone" in row["error"]
    assert isinstance(pickle.loads(row["fatal"]), vx.VisextractError)


# ---- usage errors: one line, before any work -----------------------------------------------------------


def test_usage_errors_are_one_line_before_any_work(cli, tmp_path, photos):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    cases = [
        (("--engine", "spark"), "--engine 'spark': use local or ray"),
        (("--workers", "2"), "--workers is for the ray engine: add --engine ray"),
        (("--engine", "ray", "--gpus-per-worker", "1.5"), "--gpus-per-worker 1.5: use a share of one GPU"),
        (("--engine", "ray", "--workers", "0"), "--workers must be 1 or more"),
        (("--engine", "ray", "--ray-address", "203.0.113.7:6379"), "SQLite cannot be shared with the Ray cluster"),
    ]
    for options, message in cases:
        result = cli("run", photos, "--db", db, *options)
        assert result.exit_code == 2 and message in result.stderr, (options, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists()  # nothing was started, not even the database
    nobody = cli("run", photos, "--db", db, "--engine", "ray", "--ray-address", "127.0.0.1:1")  # no Ray there
    assert nobody.exit_code == 2 and "Ray cluster at 127.0.0.1:1: nothing answers" in nobody.stderr
    assert Store(db).recent_runs(1) == []


def test_gpus_asked_of_a_cluster_without_gpus_is_a_usage_error(ray_address, photos, tmp_path):
    db = f"sqlite:///{tmp_path / 'gpu.db'}"
    ex = vx.Extractor(db=db, tools=["colors"], llm=None, engine="ray", gpus_per_worker=0.5)
    with pytest.raises(UsageError, match=r"gpus_per_worker 0\.5: the Ray cluster has no GPUs"):
        ex.run(photos)
    assert Store(db).recent_runs(1) == []  # no run was started


def test_without_ray_installed_the_engine_says_how_to_get_it(tmp_path, photos):
    blocked = "import sys; sys.modules['ray'] = None; from visextract.cli import main; main()"
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run(
        [sys.executable, "-c", blocked, "run", str(photos), "--db", db, "--engine", "ray"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "pip install 'visextract[ray]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_workers_are_laid_out_per_gpu_share_or_per_node():
    """The actor pool's shape for clusters this machine does not have (the layout is plain arithmetic)."""
    gpu_nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}]
    assert worker_shape(gpu_nodes) == worker_shape(gpu_nodes, 1.0)
    one_per_gpu = worker_shape(gpu_nodes)
    assert (one_per_gpu.workers, one_per_gpu.num_gpus, one_per_gpu.num_cpus, one_per_gpu.threads) == (8, 1.0, 3, 3)
    two_per_gpu = worker_shape(gpu_nodes, 0.5)
    assert (two_per_gpu.workers, two_per_gpu.num_gpus, two_per_gpu.num_cpus) == (16, 0.5, 1)
    assert worker_shape(gpu_nodes, 2.0).workers == 4 and worker_shape(gpu_nodes, workers=3).workers == 3
    cpu_nodes = [{"CPU": 2.0}, {"CPU": 8.0}, {"CPU": 8.0}]
    per_node = worker_shape(cpu_nodes)
    assert (per_node.workers, per_node.num_gpus, per_node.num_cpus, per_node.threads) == (3, 0, 0.5, 0)
    assert worker_shape(cpu_nodes, workers=6).threads == 1  # more workers than nodes: threads share the cores
    with pytest.raises(UsageError, match="no node has that many GPUs"):
        worker_shape(gpu_nodes, 8.0)
