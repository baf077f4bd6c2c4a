"""Model work shares the CPU through one budget per run: batches never hold more cores than the machine
has, torch runs each batch with the threads it holds, and thread-safe tools run batches side by side."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from visextract.local_models.compute import ComputeBudget
from visextract.local_models.device import use_cpu_threads
from visextract.tools.base import ToolOptions
from visextract.tools.batcher import Batcher, tool_batcher
from visextract.tools.colors import DominantColors
from visextract.tools.registry import build_tools


def test_a_budget_never_hands_out_more_cores_than_it_has():
    budget = ComputeBudget(cores=3)
    lock = threading.Lock()
    held = {"now": 0, "peak": 0}

    def work(cores: int) -> None:
        with budget.hold(cores):
            with lock:
                held["now"] += cores
                held["peak"] = max(held["peak"], held["now"])
            time.sleep(0.005)
            with lock:
                held["now"] -= cores

    threads = [threading.Thread(target=work, args=(1 + i % 3,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= held["peak"] <= 3  # cores were shared, never overbooked
    assert budget.free == 3


def test_a_batch_wanting_every_core_is_not_starved_by_single_core_batches():
    budget = ComputeBudget(cores=2)
    order: list[str] = []
    first_holds, release_first = threading.Event(), threading.Event()

    def hold(name: str, cores: int, until: threading.Event | None = None) -> None:
        with budget.hold(cores):
            order.append(name)
            if until is not None:
                first_holds.set()
                until.wait(5)

    first = threading.Thread(target=hold, args=("one core", 1, release_first))
    first.start()
    first_holds.wait(5)
    wide = threading.Thread(target=hold, args=("every core", 2))
    wide.start()
    time.sleep(0.05)  # the wide request is queued now
    narrow = threading.Thread(target=hold, args=("one more core", 1))
    narrow.start()
    time.sleep(0.05)
    assert order == ["one core"]  # a core is free, but the wide request came first
    release_first.set()
    for thread in (first, wide, narrow):
        thread.join(5)
    assert order == ["one core", "every core", "one more core"]


def test_torch_threads_are_set_per_thread():
    before = torch.get_num_threads()
    ready = threading.Barrier(2)
    seen: dict[int, int] = {}

    def worker(count: int) -> None:
        use_cpu_threads(count)
        ready.wait(5)  # both have set their own count before either reads it
        seen[count] = torch.get_num_threads()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {1: 1, 2: 2}
    assert torch.get_num_threads() == before


def loaded(batcher: Batcher) -> Batcher:
    """The batcher once its model has loaded: where the model runs decides its workers and cores."""
    batcher.start_warm_up()
    assert batcher.warmed.wait(60)
    return batcher


def test_thread_safe_cpu_tools_get_a_worker_per_share_of_the_cores():
    colors = DominantColors(ToolOptions())
    one_thread_each = loaded(tool_batcher(colors, 8, ComputeBudget(cores=4, threads_per_batch=1)))
    two_threads_each = loaded(tool_batcher(colors, 8, ComputeBudget(cores=4, threads_per_batch=2)))
    no_budget = tool_batcher(colors, 8)
    try:
        assert (one_thread_each.workers, one_thread_each.cores) == (4, 1)
        assert (two_threads_each.workers, two_threads_each.cores) == (2, 2)
        assert no_budget.workers == 1 and no_budget.budget is None
    finally:
        for batcher in (one_thread_each, two_threads_each, no_budget):
            batcher.close()


def test_a_tool_that_is_not_thread_safe_gets_one_worker_whose_batches_take_every_core(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    model = ViTForImageClassification(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            num_labels=3,
        )
    )
    model.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    (hf_classifier,) = build_tools(["classifier"], ToolOptions(models={"classifier": str(tmp_path / "vit")}))
    assert not hf_classifier.thread_safe
    batcher = loaded(tool_batcher(hf_classifier, 8, ComputeBudget(cores=4, threads_per_batch=1)))
    try:
        assert (batcher.workers, batcher.cores) == (1, 4)
    finally:
        batcher.close()


def test_a_tool_on_a_gpu_takes_no_cores_and_batches_on_one_worker():
    class GpuColors(DominantColors):  # stands for any tool whose model sits on a GPU
        def uses_cpu(self) -> bool:
            return False

    batcher = loaded(tool_batcher(GpuColors(ToolOptions()), 8, ComputeBudget(cores=4)))
    try:
        assert (batcher.workers, batcher.cores, batcher.batch_size) == (1, 0, 8)
    finally:
        batcher.close()


def test_finding_where_a_model_runs_happens_on_the_workers_not_the_callers_thread():
    asked_from: list[str] = []

    class WatchedColors(DominantColors):
        def uses_cpu(self) -> bool:
            asked_from.append(threading.current_thread().name)
            return True

    batcher = tool_batcher(WatchedColors(ToolOptions()), 8, ComputeBudget(cores=2))
    assert asked_from == []  # building the batcher does not ask (it would import torch here)
    loaded(batcher).close()
    assert asked_from and all(name.startswith("batch-colors") for name in asked_from)


def test_batches_run_side_by_side_each_holding_a_core_with_one_torch_thread():
    budget = ComputeBudget(cores=2, threads_per_batch=1)
    together = threading.Barrier(2, timeout=10)  # breaks unless two batches run at the same time
    threads_seen: list[int] = []
    free_cores_seen: list[int] = []

    def run_batch(items: list[int]) -> list[int]:
        threads_seen.append(torch.get_num_threads())
        together.wait()
        free_cores_seen.append(budget.free)  # both batches hold their core now
        together.wait()
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher("pair", run_batch, batch_size=1, workers=2, budget=budget, cores=1)
    futures = [batcher.submit(i) for i in range(4)]
    assert [future.result(timeout=20).value for future in futures] == [0, 10, 20, 30]
    batcher.close()
    assert threads_seen == [1, 1, 1, 1]
    assert free_cores_seen == [0, 0, 0, 0]
    assert budget.free == 2


def test_more_workers_than_cores_never_run_more_batches_than_cores():
    budget = ComputeBudget(cores=2)
    lock = threading.Lock()
    running = {"now": 0, "peak": 0}

    def run_batch(items: list[int]) -> list[int]:
        with lock:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
        return items

    batcher: Batcher[int, int] = Batcher("many", run_batch, batch_size=1, workers=4, budget=budget, cores=1)
    futures = [batcher.submit(i) for i in range(16)]
    assert sorted(future.result(timeout=20).value for future in futures) == list(range(16))
    batcher.close()
    assert running["peak"] == 2


def test_a_worker_leaves_a_fair_share_of_the_queue_to_the_others():
    budget = ComputeBudget(cores=2)
    sizes: list[int] = []

    def run_batch(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    with budget.hold(2):  # both workers wait for cores with the first two items; the rest queue up
        batcher: Batcher[int, int] = Batcher("share", run_batch, batch_size=8, workers=2, budget=budget, cores=1)
        futures = [batcher.submit(i) for i in range(10)]
        time.sleep(0.1)
    assert sorted(future.result(timeout=20).value for future in futures) == list(range(10))
    batcher.close()
    assert sum(sizes) == 10 and max(sizes) <= 5  # at most half of what waited, never the full batch of 8


@pytest.mark.parametrize("threads", [0, 2])
def test_the_budget_comes_from_the_threads_setting(threads):
    budget = ComputeBudget.for_this_machine(threads)
    assert budget.threads_per_batch == min(max(1, threads), budget.cores)


def test_a_ray_workers_threads_size_its_runs_batches(tmp_path):
    """A Ray worker's plan carries its share of the node as the tools' threads (`worker_plan`): its run's
    batches use that many threads each, as its onnxruntime sessions do (one setting, not two)."""
    import asyncio

    import visextract as vx
    from visextract.engines.ray import WorkerShape, worker_plan

    extractor = vx.Extractor(db=f"sqlite:///{tmp_path / 'w.db'}", tools=["colors"], llm=None)
    plan = worker_plan(extractor.plan, WorkerShape(1, num_cpus=2, num_gpus=0, threads=2))
    context = plan.open_context()
    try:
        budget = context.batchers["colors"].budget
        assert budget is not None and budget.threads_per_batch == min(2, budget.cores)
    finally:
        asyncio.run(plan.close_context(context))
