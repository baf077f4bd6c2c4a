"""A batch tool is judged by what happens on the 10,001st image: kill -9 and SIGTERM mid-run, and two
runs writing the same database at once. Real `visextract run` processes, real signals. (Ctrl-C has its
own tests in test_interrupts.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from visextract.store import Store


def make_distinct_photos(folder: Path, count: int) -> list[Path]:
    """`count` different real photos (crops of scikit-image's samples), so none share content."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    sources = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    paths = []
    for i in range(count):
        image = Image.fromarray(sources[i % len(sources)])
        crop = image.crop((i, i, image.width - 2 * i, image.height - i))
        path = folder / f"photo_{i:03d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def visextract(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "visextract.cli", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def count_records(url: str) -> int:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM record WHERE is_current")).scalar_one()
    except Exception:
        return 0
    finally:
        store.close()


def wait_for_records(url: str, at_least: int, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while count_records(url) < at_least:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)


def assert_consistent(url: str, paths: list[Path]) -> None:
    """Every image exactly once, with exactly one current record, whose tool results all exist."""
    store = Store(url)
    with store.engine.connect() as connection:
        current = connection.execute(
            text("SELECT path, status, image_id, tools FROM record WHERE is_current ORDER BY path")
        ).all()
        assert sorted(row.path for row in current) == sorted(str(p) for p in paths)
        assert {row.status for row in current} == {"ok"}
        per_subject = connection.execute(
            text("SELECT subject, count(*) FROM record WHERE is_current GROUP BY subject HAVING count(*) > 1")
        ).all()
        assert per_subject == []
        assert connection.execute(text("SELECT count(*) FROM image")).scalar_one() == len(paths)
        for row in current:  # nothing half-written: an ok record always has every tool result it names
            tools = row.tools if isinstance(row.tools, dict) else json.loads(row.tools)
            stored = {
                tool for (tool,) in connection.execute(
                    text("SELECT tool FROM tool_result WHERE image_id = :id"), {"id": row.image_id}
                )
            }  # fmt: skip
            assert set(tools) <= stored
    store.close()


TOOLS = "classifier,faces,ocr,colors"


def test_kill_9_mid_run_then_rerun_loses_nothing_and_duplicates_nothing(any_db, tmp_path):
    paths = make_distinct_photos(tmp_path / "photos", 16)
    run = visextract("run", tmp_path / "photos", "--db", any_db, "--tools", TOOLS, "--batch-size", "2")
    wait_for_records(any_db, 3, run)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    stored = count_records(any_db)
    assert 3 <= stored < 16
    rerun = visextract("run", tmp_path / "photos", "--db", any_db, "--tools", TOOLS)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"{16 - stored} processed" in out and f"{stored} skipped" in out
    assert_consistent(any_db, paths)


def test_two_runs_on_overlapping_folders_share_one_database(any_db, tmp_path):
    paths = make_distinct_photos(tmp_path / "all", 18)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for i, path in enumerate(paths):  # 0-11 in the first folder, 6-17 in the second: six shared files
        if i < 12:
            os.link(path, first / path.name)
        if i >= 6:
            os.link(path, second / path.name)
    runs = [visextract("run", folder, "--db", any_db, "--tools", "classifier,colors") for folder in (first, second)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err
    store = Store(any_db)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM image")).scalar_one() == 18
        current = connection.execute(
            text("SELECT subject, count(*) FROM record WHERE is_current GROUP BY subject")
        ).all()
        assert len(current) == 18 and all(n == 1 for _, n in current)
        shared = connection.execute(
            text("SELECT count(*) FROM image_path WHERE path LIKE :p"), {"p": f"{second}%"}
        ).scalar_one()  # fmt: skip
        assert shared == 12
    store.close()


@pytest.mark.parametrize("signal_name", ["SIGTERM"])
def test_a_terminated_run_leaves_no_partial_records(any_db, tmp_path, signal_name):
    paths = make_distinct_photos(tmp_path / "photos", 10)
    run = visextract("run", tmp_path / "photos", "--db", any_db, "--tools", TOOLS)
    wait_for_records(any_db, 2, run)
    run.send_signal(getattr(signal, signal_name))
    run.wait(timeout=60)
    rerun = visextract("run", tmp_path / "photos", "--db", any_db, "--tools", TOOLS)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert_consistent(any_db, paths)
