"""Admission to the LLM: at most `concurrency` calls at once and no new calls once `budget_usd` is
spent (`LlmGate`); at most `rpm` requests a minute, retries included (`RateLimiter`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BudgetSpentError(Exception):
    """The run's LLM budget is used up; the image gets a tools-only record."""


class LlmGate:
    def __init__(self, concurrency: int, budget_usd: float | None = None) -> None:
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.budget_usd = budget_usd
        self.spent_usd = 0.0
        self.unpriced_calls = 0
        self.skipped_for_budget = 0
        self.fatal: Exception | None = None  # set when the server refuses for good: no further calls
        self.problem: str | None = None  # the first reason an image got no LLM answer (server unreachable...)

    def note_problem(self, reason: str) -> None:
        """Remember why an image got no answer, for the run's summary (the first reason is kept)."""
        if self.problem is None:
            self.problem = reason

    def refuse_all(self, error: Exception) -> None:
        """Stop admitting calls: every later `slot()` raises `error`."""
        self.fatal = error

    @property
    def budget_left(self) -> bool:
        return self.budget_usd is None or self.spent_usd < self.budget_usd

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a call slot; raises BudgetSpentError once the budget is spent."""
        if self.fatal is not None:
            raise self.fatal
        if not self.budget_left:
            self.skipped_for_budget += 1
            raise BudgetSpentError
        async with self._slots:
            if self.fatal is not None:
                raise self.fatal
            if not self.budget_left:  # spent while this call was waiting
                self.skipped_for_budget += 1
                raise BudgetSpentError
            yield

    def add_cost(self, cost_usd: float | None) -> None:
        if cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.spent_usd += cost_usd


class RateLimiter:
    """Spaces requests evenly so that at most `rpm` start in any minute. Called before every HTTP
    attempt, so transient retries count too, as they do on the server's side."""

    def __init__(self, rpm: float) -> None:
        self.interval = 60.0 / rpm
        self._next_start = 0.0
        self._lock: asyncio.Lock | None = None

    async def wait(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)
