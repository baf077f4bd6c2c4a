"""The ray engine: the local engine's extraction on a Ray cluster, with Ray Data.

    paths, streamed from the driver's listing                      (PathsFromDriver)
      -> map_batches(ExtractBatch, ActorPoolStrategy, num_gpus)     one model set per actor
      -> one outcome row per image, streamed back to the driver     (progress bar, summary)

Each actor builds the run's extraction context once (`RunPlan.open_context`: tools, batchers, database
writer, LLM client) and runs the local engine's per-image graph (`engines.local.run_images`) over each
batch on its own event loop. So the records, idempotency and failure records are the local engine's, and
hashing and the already-done check come first, in the graph's `load` node: models load only when an image
needs them, so a re-run of finished images loads none.

One small actor per run (`SharedRunState`) holds what the workers share: the stream of paths (a bounded
queue the driver fills as it lists), the stop flag (Ctrl-C), and the LLM account, so `--budget-usd` is
global. `--concurrency` and `--rpm` are split evenly between the workers: no round trip per request, no
slot lost when a worker dies, and the sum never exceeds what the user allowed.

A worker that dies is restarted by Ray Data (its defaults for actor pools: `max_restarts=-1`,
`max_task_retries=-1`) and its batch retried: images it had saved are found done (a run never makes two
records of an image, also under --force), the ones it was computing are redone. When the driver dies, the
run's actors die with it; what was saved stays, and the next run continues.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from visextract.agents.llm.gate import LlmGate
from visextract.engines.lifecycle import FileListing, RunPlan
from visextract.engines.local import ImageOutcome, RunOutcome, run_images
from visextract.errors import UsageError, VisextractError, option_name
from visextract.store.engine import parse_db_url

log = logging.getLogger("visextract")

PATHS_PER_CHUNK = 256  # paths the driver sends at once
CHUNKS_QUEUED = 64  # chunks waiting for the workers at most: the listing runs ahead by ~16k paths, no more
STOP_POLL_S = 0.5  # how often a busy worker checks whether the run is stopping
FORWARDED_ENV = (  # what the workers need from the driver's environment (a cluster's nodes have their own)
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
)


# ---- options and the cluster ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerShape:
    """The actor pool: `workers` actors (one model set each), each reserving `num_cpus` and `num_gpus`,
    with `threads` CPU threads per model (0: every core of its node)."""

    workers: int
    num_cpus: float
    num_gpus: float
    threads: int = 0


def worker_shape(
    nodes: list[dict[str, float]], gpus_per_worker: float | None = None, workers: int | None = None
) -> WorkerShape:
    """Lay out the workers over the cluster's alive `nodes` (their resources: {"CPU": 16, "GPU": 4}).

    With GPUs: one worker per `gpus_per_worker` (default 1) of every GPU; each reserves an even share of its
    node's CPUs (less one, for Ray Data's own tasks) and uses that many threads for its CPU tools.
    CPU only: one worker per node, whose models use every core of the node through their own threads; it
    reserves half a CPU, so a small node keeps room for the path stream (on 2 CPUs, a pool that holds both
    CPUs never gets its input).
    `workers` caps the count (or, on CPUs, asks for more per node: their threads then share the cores).
    """
    gpu_nodes = [node for node in nodes if node.get("GPU", 0) > 0]
    if gpu_nodes:
        per_worker = gpus_per_worker or 1.0
        slots = [int(node["GPU"] / per_worker + 1e-9) for node in gpu_nodes]
        if sum(slots) == 0:
            most = max(node["GPU"] for node in gpu_nodes)
            raise UsageError(f"{option_name('gpus_per_worker')} {per_worker:g}: no node has that many GPUs ({most:g})")
        cpus = min(max(1, int((node.get("CPU", 1) - 1) // k)) for node, k in zip(gpu_nodes, slots, strict=True) if k)
        return WorkerShape(min(workers or sum(slots), sum(slots)), num_cpus=cpus, num_gpus=per_worker, threads=cpus)
    if gpus_per_worker:
        raise UsageError(f"{option_name('gpus_per_worker')} {gpus_per_worker:g}: the Ray cluster has no GPUs")
    count = workers or len(nodes)
    smallest = int(min(node.get("CPU", 1) for node in nodes))
    threads = 0 if count <= len(nodes) else max(1, smallest * len(nodes) // count)
    return WorkerShape(count, num_cpus=0.5, num_gpus=0, threads=threads)


@dataclass
class RayCluster:
    """A connected Ray cluster and the worker layout for this run. `close()` stops a local instance that
    this process started (a cluster it joined is left running)."""

    address: str
    shape: WorkerShape
    started_here: bool

    def close(self) -> None:
        if self.started_here and ray.is_initialized():
            ray.shutdown()


@dataclass
class RayOptions:
    """`--engine ray` options, checked before any work.

    `address`: a Ray cluster ("HOST:PORT", "ray://HOST:10001", "auto"); default $RAY_ADDRESS, else a new
    local instance sized to this machine. A Ray already initialised in this process is used as it is.
    """

    address: str | None = None
    gpus_per_worker: float | None = None
    workers: int | None = None
    db_url: str = "sqlite:///visextract.db"

    def __post_init__(self) -> None:
        gpus = self.gpus_per_worker
        if gpus is not None and not (0 < gpus <= 1 or (gpus > 1 and float(gpus).is_integer())):
            raise UsageError(
                f"{option_name('gpus_per_worker')} {gpus:g}: use a share of one GPU (0.25, 0.5, 1) or a whole number"
            )
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"{option_name('workers')} must be 1 or more")
        self.address = self.address or os.environ.get("RAY_ADDRESS") or None
        where = _host_and_port(self.address)
        if _is_sqlite(self.db_url) and where is not None and not _on_this_machine(where[0]):
            raise UsageError(f"SQLite cannot be shared with the Ray cluster at {self.address}: {_POSTGRES_HINT}")

    def connect(self) -> RayCluster:
        """Join the cluster (or start a local instance) and lay out the workers; errors are one line."""
        started_here = False
        self._check_reachable()
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.ERROR)
                else:
                    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR)
                    started_here = True
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = (
                    "; a cluster with token authentication (Ray's default for local instances) needs "
                    "RAY_AUTH_MODE=token and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                    if self.address and "RAY_AUTH_MODE" not in os.environ
                    else ""
                )
                where = self.address or "a new local instance"
                raise UsageError(f"cannot connect to the Ray cluster at {where}: {_first_line(exc)}{hint}") from None
        _quiet_ray_data()
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        address = self.address or ray.get_runtime_context().gcs_address
        cluster = RayCluster(address, worker_shape([n["Resources"] for n in nodes], self.gpus_per_worker, self.workers),
                             started_here)  # fmt: skip
        if _is_sqlite(self.db_url) and (
            len(nodes) > 1 or not all(_on_this_machine(n["NodeManagerAddress"]) for n in nodes)
        ):
            cluster.close()
            machines = f"the {len(nodes)} machines of the Ray cluster at {address}"
            raise UsageError(f"SQLite cannot be shared by {machines}: {_POSTGRES_HINT}")
        return cluster

    def _check_reachable(self, timeout_s: float = 10.0) -> None:
        """A cluster address that nothing answers is an error now (Ray itself would keep retrying for minutes)."""
        where = _host_and_port(self.address)
        if where is None:
            return
        try:
            socket.create_connection(where, timeout=timeout_s).close()
        except OSError as exc:
            raise UsageError(
                f"cannot connect to the Ray cluster at {self.address}: nothing answers there ({exc.strerror or exc}); "
                "start it with `ray start --head` or check --ray-address"
            ) from None


_POSTGRES_HINT = "several machines need PostgreSQL (--db postgresql+psycopg://USER@HOST/DB)"


def _quiet_ray_data() -> None:
    """The driver shows visextract's progress bar, not Ray Data's bars and execution plans."""
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    # the path stream is one read task whose blocks keep coming: Ray Data's planning-time warning that one
    # input limits the pool to one task does not apply
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _is_sqlite(url: str) -> bool:
    return parse_db_url(url).get_backend_name() == "sqlite"


def _host_and_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a Ray address ("HOST:PORT", "ray://HOST:PORT", "[::1]:6379"); None for "auto" and
    "local" (this machine)."""
    if not address or address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):  # [IPv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    return host, int(port) if port.isdigit() else (10001 if address.startswith("ray://") else 6379)


def _on_this_machine(host: str) -> bool:
    """Whether `host` is an address of this machine: binding a socket to it works only then (no traffic)."""
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        family = socket.getaddrinfo(host, None)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---- what every worker shares: paths, the stop flag, the LLM account ---------------------------------


@ray.remote(num_cpus=0, max_restarts=0)
class SharedRunState:
    """One run's shared state on the cluster: the paths the driver lists (a bounded queue), whether the run
    is stopping, and the LLM account (spend, calls without a price, images past the budget)."""

    def __init__(self, chunks_queued: int = CHUNKS_QUEUED) -> None:
        self.paths: asyncio.Queue[list[str] | None] = asyncio.Queue(maxsize=chunks_queued)
        self.stopping = False
        self.spent_usd = 0.0
        self.unpriced_calls = 0
        self.skipped_for_budget = 0
        self.problem: str | None = None

    async def put_paths(self, chunk: list[str] | None) -> None:
        """Queue a chunk of paths (None: the listing ended); waits while the queue is full."""
        if not self.stopping:
            await self.paths.put(chunk)

    async def take_paths(self) -> list[str] | None:
        """The next chunk of paths; None once the listing ended or the run is stopping."""
        return None if self.stopping else await self.paths.get()

    async def stop(self) -> None:
        """No new images: the queued paths are dropped and the path stream ends."""
        self.stopping = True
        while not self.paths.empty():
            self.paths.get_nowait()
        self.paths.put_nowait(None)

    async def is_stopping(self) -> bool:
        return self.stopping

    async def add_cost(self, cost_usd: float | None) -> float:
        """Count one LLM call's cost (None: no known price); returns the run's spend so far."""
        if cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.spent_usd += cost_usd
        return self.spent_usd

    async def spent(self) -> float:
        return self.spent_usd

    async def add_usage(self, skipped_for_budget: int, problem: str | None) -> None:
        self.skipped_for_budget += skipped_for_budget
        self.problem = self.problem or problem

    async def usage(self) -> dict[str, Any]:
        return {
            "spent_usd": self.spent_usd,
            "unpriced_calls": self.unpriced_calls,
            "skipped_for_budget": self.skipped_for_budget,
            "problem": self.problem,
        }


class SharedBudgetGate(LlmGate):
    """A worker's LLM gate: its own share of the call slots, and the run's budget counted over every worker
    (in `SharedRunState`), so no new call starts anywhere once the run has spent `budget_usd`."""

    def __init__(self, concurrency: int, budget_usd: float | None, state: Any) -> None:
        super().__init__(concurrency, budget_usd)
        self.state = state
        self.spent_by_run = 0.0
        self._skipped_reported = 0
        self._unsent: list[Any] = []  # this worker's cost reports not yet confirmed by the shared state

    @property
    def budget_left(self) -> bool:
        return self.budget_usd is None or self.spent_by_run < self.budget_usd

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.budget_usd is not None:  # what every worker has spent (this one's reports arrived first)
            await self._flush()
            self.spent_by_run = max(self.spent_by_run, await self.state.spent.remote())
        async with super().slot():
            yield

    def add_cost(self, cost_usd: float | None) -> None:
        super().add_cost(cost_usd)
        self.spent_by_run += cost_usd or 0.0
        self._unsent.append(self.state.add_cost.remote(cost_usd))

    async def _flush(self) -> None:
        unsent, self._unsent = self._unsent, []
        for reply in unsent:
            await reply

    async def report(self) -> None:
        """Send what the run's summary needs that is not sent per call (images past the budget, problems),
        once this worker's costs have arrived."""
        await self._flush()
        skipped, self._skipped_reported = self.skipped_for_budget - self._skipped_reported, self.skipped_for_budget
        if skipped or self.problem:
            await self.state.add_usage.remote(skipped, self.problem)


# ---- the pipeline: paths -> ExtractBatch actors -> outcomes -----------------------------------------


class PathsFromDriver(Datasource):
    """The driver's file listing as a dataset of paths: one read task relays the chunks the driver puts
    into the run's shared state while it lists, so the listing is never held whole anywhere."""

    def __init__(self, state: Any, rows_per_block: int) -> None:
        super().__init__()
        self.state = state
        self.rows_per_block = rows_per_block  # one block per worker batch: batches spread over the workers

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # unknown until the listing ends

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        state, rows = self.state, self.rows_per_block

        def relay() -> Iterator[pa.Table]:
            while (chunk := ray.get(state.take_paths.remote())) is not None:
                for start in range(0, len(chunk), rows):
                    yield pa.table({"path": pa.array(chunk[start : start + rows], pa.string())})

        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(relay, metadata, schema=pa.schema([("path", pa.string())]))]


OUTCOME_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("record_id", pa.int64()),
        ("fatal", pa.binary()),  # a run-wide error (pickled), on the row of the image that hit it
    ]
)


class ExtractBatch:
    """A Ray Data worker: one model set, built once, running the extraction graph over batches of paths.

    `__init__` opens the run's extraction context (tools, batchers, database writer, LLM gate); models load
    when the first image needs them. `__call__` runs the batch through `run_images` on this actor's event
    loop, like the local engine, and returns one outcome row per image it started. A setup problem on this
    node (a model or setting the driver had but this node lacks) is returned with the first batch as the
    run's error, rather than raised: Ray would restart the actor again and again.
    """

    def __init__(self, plan: RunPlan, state: Any) -> None:
        from visextract.agents.extraction_graph import build_extraction_graph

        self.state = state
        self.stop = threading.Event()
        self.gate = SharedBudgetGate(plan.concurrency, plan.budget_usd, state) if plan.llm is not None else None
        self.setup_error: VisextractError | None = None
        try:
            self.context = plan.open_context(self.stop, llm_gate=self.gate)
        except VisextractError as exc:
            self.setup_error = exc
        self.graph = build_extraction_graph()
        self.images_in_flight = plan.images_in_flight
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="visextract-worker-loop", daemon=True).start()

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist()
        if self.setup_error is not None:
            images, fatal = [], self.setup_error
        else:
            images, fatal = asyncio.run_coroutine_threadsafe(self._extract(paths), self.loop).result()
        fatal_column: list[bytes | None] = [None] * len(images)
        if fatal is not None:
            if not images:
                images.append(ImageOutcome(path="", status="cancelled", error=str(fatal)))
                fatal_column.append(None)
            fatal_column[0] = pickle.dumps(fatal)
        return pa.table(
            {
                "path": [image.path for image in images],
                "status": [image.status for image in images],
                "error": [image.error for image in images],
                "record_id": [image.record_id for image in images],
                "fatal": fatal_column,
            },
            schema=OUTCOME_SCHEMA,
        )

    async def _extract(self, paths: list[str]) -> tuple[list[ImageOutcome], VisextractError | None]:
        images: list[ImageOutcome] = []
        watcher = asyncio.create_task(self._watch_stop())
        try:
            outcome = await run_images(
                self.graph, self.context, paths, images_in_flight=self.images_in_flight, on_image=images.append
            )
        finally:
            watcher.cancel()
        if self.gate is not None:
            await self.gate.report()
        return images, outcome.fatal

    async def _watch_stop(self) -> None:
        """Stop taking new images once the run is stopping (Ctrl-C on the driver, or a run-wide error)."""
        while not self.stop.is_set():
            if await self.state.is_stopping.remote():
                self.stop.set()
                return
            await asyncio.sleep(STOP_POLL_S)


def worker_plan(plan: RunPlan, shape: WorkerShape) -> RunPlan:
    """The plan each worker runs: absolute paths (a worker does not share the driver's working folder),
    its threads, and the run's LLM limits split between the workers."""
    settings = plan.settings.model_copy(update={"db": _absolute_db_url(plan.settings.db)})
    artifacts = plan.tool_options.artifacts_dir
    tool_options = replace(
        plan.tool_options,
        threads=shape.threads or plan.tool_options.threads,
        artifacts_dir=Path(artifacts).absolute() if artifacts is not None else None,
    )
    return replace(
        plan,
        settings=settings,
        tool_options=tool_options,
        concurrency=max(1, plan.concurrency // shape.workers),
        rpm=plan.rpm / shape.workers if plan.rpm else None,
    )


def _absolute_db_url(url: str) -> str:
    parsed = parse_db_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return url
    return parsed.set(database=str(Path(database).expanduser().absolute())).render_as_string(hide_password=False)


def _ship_user_schema(plan: RunPlan) -> None:
    """A schema loaded from the user's .py file lives in a module the workers cannot import: send it by value."""
    import sys

    module = sys.modules.get(plan.schema.model.__module__)
    if module is not None and module.__name__.startswith("visextract_user_schema_"):
        ray.cloudpickle.register_pickle_by_value(module)


async def extract_on_ray(
    plan: RunPlan,
    files: Iterable[Path | str],
    stop: threading.Event,
    *,
    cluster: RayCluster,
    on_start: Callable[[int | None], None] | None = None,
    on_image: Callable[[ImageOutcome], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run `plan` over `files` on `cluster`: the driver streams the listing in, Ray Data runs `ExtractBatch`
    actors, the outcomes stream back. Setting `stop` (Ctrl-C does) stops the listing and the workers take no
    new images; what they are computing is finished and saved, as in the local engine."""
    shape = cluster.shape
    _ship_user_schema(plan)
    per_worker = worker_plan(plan, shape)
    # a worker takes small batches, several at once: its images in flight are the local engine's, its tools
    # batch across them, and the last batches of a run spread over every worker
    batch_size = max(1, min(per_worker.settings.batch_size, per_worker.images_in_flight))
    calls = max(1, -(-per_worker.images_in_flight // batch_size))
    state = SharedRunState.remote()
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    paths = ray.data.read_datasource(PathsFromDriver(state, batch_size), override_num_blocks=1, num_cpus=0.1)
    outcomes = paths.map_batches(
        ExtractBatch,
        fn_constructor_kwargs={"plan": per_worker, "state": state},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=shape.workers, max_concurrent_calls_per_actor=calls, enable_true_multi_threading=True
        ),
        num_cpus=shape.num_cpus,
        num_gpus=shape.num_gpus or None,
        runtime_env={"env_vars": env} if env else None,
    )
    if on_start is not None:
        on_start(None)
    if on_status is not None:
        on_status(f"starting {shape.workers} Ray worker{'s' if shape.workers > 1 else ''}…")
    outcome = RunOutcome()
    run = _Streams(files, outcomes, state, stop, outcome, on_start, on_image, on_status)
    try:
        await run.wait()
        usage = ray.get(state.usage.remote())
    finally:
        ray.kill(state)
    if plan.llm is not None:
        outcome.llm_cost_usd = round(usage["spent_usd"], 6) if not usage["unpriced_calls"] else None
        outcome.budget_skipped = usage["skipped_for_budget"]
        outcome.llm_problem = usage["problem"]
    outcome.interrupted = stop.is_set() and outcome.fatal is None
    return outcome


class _Streams:
    """The driver's two streams, each on a daemon thread: the listing into the run's shared state, and the
    outcome rows out of Ray Data into the run's counts and the progress callbacks."""

    def __init__(
        self,
        files: Iterable[Path | str],
        outcomes: ray.data.Dataset,
        state: Any,
        stop: threading.Event,
        outcome: RunOutcome,
        on_start: Callable[[int | None], None] | None,
        on_image: Callable[[ImageOutcome], None] | None,
        on_status: Callable[[str], None] | None,
    ) -> None:
        self.files, self.outcomes, self.state, self.stop, self.outcome = files, outcomes, state, stop, outcome
        self.on_start, self.on_image, self.on_status = on_start, on_image, on_status
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.feeder = threading.Thread(target=self._feed, name="visextract-listing", daemon=True)
        self.reader = threading.Thread(target=self._read, name="visextract-outcomes", daemon=True)
        self.feeder.start()
        self.reader.start()

    async def wait(self) -> None:
        """Until every outcome is in; passes Ctrl-C on to the workers; raises what broke a stream."""
        stopping = False
        while not self.done.is_set():
            await asyncio.sleep(0.1)
            if self.stop.is_set() and not stopping:
                stopping = True
                await asyncio.to_thread(ray.get, self.state.stop.remote())
        if self.errors:
            raise self.errors[0]

    def _feed(self) -> None:
        try:
            for chunk in _chunks(self.files, PATHS_PER_CHUNK):
                if self.stop.is_set():
                    break
                ray.get(self.state.put_paths.remote([str(path) for path in chunk]))
            ray.get(self.state.put_paths.remote(None))
            if isinstance(self.files, FileListing) and self.files.complete and self.on_start is not None:
                self.on_start(self.files.found)
        except BaseException as exc:  # a listing that broke stops the run and is raised by `wait`
            self.errors.append(exc)
            self.stop.set()

    def _read(self) -> None:
        first = True
        try:
            for block in self.outcomes.iter_batches(batch_size=None, batch_format="pyarrow"):
                if first and self.on_status is not None:
                    self.on_status("extracting")
                    first = False
                for row in block.to_pylist():
                    self._add(row)
        except BaseException as exc:
            fatal = _visextract_error(exc)
            if fatal is None:
                self.errors.append(exc)
            elif self.outcome.fatal is None:
                self.outcome.fatal = fatal
            self.stop.set()
        finally:
            self.done.set()

    def _add(self, row: dict[str, Any]) -> None:
        if row["fatal"] is not None:
            if self.outcome.fatal is None:
                self.outcome.fatal = pickle.loads(row["fatal"])
            self.stop.set()
        if not row["path"]:
            return
        image = ImageOutcome(path=row["path"], status=row["status"], error=row["error"], record_id=row["record_id"])
        self.outcome.add(image)
        if self.on_image is not None:
            self.on_image(image)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _visextract_error(exc: BaseException) -> VisextractError | None:
    """The user-facing error at the root of a Ray error (a worker whose models would not load...), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, VisextractError):
            return current
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__ or current.__context__
    return None
