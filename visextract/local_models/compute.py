"""How model work shares the CPU: one budget of cores per run, split between the models.

PyTorch and onnxruntime each start one intra-op thread per core by default. A run has one batcher per
tool, so several models compute at once, and several all-core thread pools then share the same cores:
they oversubscribe them, their threads wait at barriers for threads the OS has parked, and every model
runs slower than it would alone (on a loaded 2-core machine, the classifier went from 28 ms to 700 ms
per image). Instead, on the CPU:

- every batch runs with a fixed, small number of intra-op threads (`threads_per_batch`: 1, or
  `--threads`/`VISEXTRACT_THREADS`), set per model: onnxruntime sessions are built with it, and the
  batcher's worker thread sets torch's for itself (`device.use_cpu_threads`);
- a batch holds that many cores of the run's `ComputeBudget` while it runs, so the batches running at
  once never ask for more threads than the machine has cores;
- tools that can run batches side by side (`Tool.thread_safe`) get one worker per share of the cores,
  so one slow model (OCR) can use every core the others leave idle.

The cores are kept busy by running models and images side by side, which scales better on a CPU than
splitting one small convolution between cores. Tools whose model runs on a GPU batch across images on
one worker and take no cores from the budget.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from visextract.local_models.device import available_cores


def batch_threads(threads: int = 0) -> int:
    """Intra-op threads for one CPU batch: `threads` (the --threads setting) if given, else 1."""
    return max(1, min(threads or 1, available_cores()))


class ComputeBudget:
    """A run's CPU cores, handed out to model batches first come, first served.

    budget = ComputeBudget(cores=4, threads_per_batch=1)
    with budget.hold(1):   # waits until a core is free
        run_the_batch()
    """

    def __init__(self, cores: int, threads_per_batch: int = 1) -> None:
        self.cores = max(1, cores)
        self.threads_per_batch = max(1, min(threads_per_batch, self.cores))
        self._free = self.cores
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    @classmethod
    def for_this_machine(cls, threads: int = 0) -> ComputeBudget:
        """The cores this process may use; `threads` is the --threads setting (0: one per batch)."""
        return cls(available_cores(), batch_threads(threads))

    def workers_for(self, threads: int) -> int:
        """How many batches of `threads` threads each fit in the budget at once."""
        return max(1, self.cores // max(1, threads))

    @contextmanager
    def hold(self, cores: int) -> Iterator[None]:
        """Hold `cores` cores (at most all of them) while the block runs; waits in arrival order."""
        cores = max(0, min(cores, self.cores))
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            self._changed.wait_for(lambda: self._waiting[0] is ticket and self._free >= cores)
            self._waiting.popleft()
            self._free -= cores
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._free += cores
                self._changed.notify_all()

    @property
    def free(self) -> int:
        with self._changed:
            return self._free
