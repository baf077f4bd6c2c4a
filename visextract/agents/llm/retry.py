"""Retrying transient API errors (429, 5xx, timeouts, connection resets) with tenacity.

This is the only place transient API retries happen; the validation re-ask is a separate loop in the
extraction graph. Waits honour the server's Retry-After, else back off exponentially with jitter.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger("visextract")
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: rate limits, server errors, timeouts and dropped connections."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, TimeoutError | ConnectionError)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a server asked for (Retry-After-Ms, Retry-After seconds or HTTP date), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _WaitRetryAfterOrBackoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.maximum = maximum
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(exc) if exc else None
        return min(asked, self.maximum) if asked is not None else self.backoff(state)


async def with_transient_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    initial_wait: float,
    max_wait: float,
    on_failure: Callable[[BaseException, float], Any] | None = None,
) -> T:
    """`await call()`, retrying transient errors up to `max_attempts` tries in all.

    `on_failure(exc, seconds)` is called for every failed try (transient or not), so each attempt
    can be recorded. The last error is re-raised when the tries run out.
    """
    started = [0.0]

    async def attempt() -> T:
        started[0] = time.perf_counter()
        try:
            return await call()
        except Exception as exc:
            if on_failure is not None:
                on_failure(exc, time.perf_counter() - started[0])
            raise

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.info("transient LLM error (%s); retry %d in %.1f s", _short(exc), state.attempt_number, wait)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=_WaitRetryAfterOrBackoff(initial_wait, max_wait),
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    status = getattr(exc, "status_code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{status} {text[:120]}" if status else f"{type(exc).__name__}: {text[:120]}"


def describe_error(exc: BaseException) -> str:
    """One line for an API error, for records and messages."""
    return _short(exc)
