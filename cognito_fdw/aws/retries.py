"""The retry policy, in one place: which failed attempts of a Cognito call are sent again,
after how long, and when none is.

- botocore's own rules (:func:`config`: ``retry_mode`` standard or adaptive, ``max_attempts``
  attempts in all) retry throttling, transient and connection errors with its backoff;
- :func:`retry_cut_body` adds the rule they lack: a body shorter than its Content-Length is
  retried like a transient error, with full jitter;
- :func:`stop_past_deadline` comes before every rule: past the call's deadline
  (``request_deadline``) nothing is retried, the call fails;
- :func:`throttled` says which answers are throttling, by botocore's own list (the call
  counts them for EXPLAIN ANALYZE).

:func:`register` puts these rules on a client's ``needs-retry`` event; :mod:`.attempts`
holds the call they apply to, its deadline and the rate-limit slot each retry waits for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from ..options import Options
from ..pg import backend

# The longest a cut body's retry waits (botocore's standard mode caps its backoff alike).
MAX_BACKOFF_SECONDS = 20.0


def config(options: Options) -> dict:
    """botocore's ``retries`` config of a client for ``options``."""
    return {"mode": options.retry_mode, "total_max_attempts": options.max_attempts}


def register(events, max_attempts: int, deadline: Callable[[], float | None]) -> None:
    """Register the rules on a client's event system (``client.meta.events``); ``deadline``
    gives the deadline (``time.monotonic()``) of the call being sent, None outside one."""
    events.register("needs-retry.cognito-idp", retry_cut_body(max_attempts))

    def no_retry_past_deadline(**_):
        stop_past_deadline(deadline())

    # First: past the deadline no other rule may schedule a retry.
    events.register_first("needs-retry.cognito-idp", no_retry_past_deadline)


def backoff(attempts: int) -> float:
    """Seconds before the retry that follows attempt number ``attempts`` (full jitter)."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempts))


def retry_cut_body(max_attempts: int):
    """A retry rule botocore lacks: a body shorter than its Content-Length.

    botocore reads responses with content-length enforcement off and parses invalid JSON
    into a bare ``{"message": ...}``, so a connection cut mid-body would look like a valid,
    empty last page: rows silently lost.  Retried like any transient error instead.
    """

    def needs_retry(response=None, attempts=0, caught_exception=None, **_):
        if response is None or caught_exception is not None or attempts >= max_attempts:
            return None
        http_response = response[0]
        expected = http_response.headers.get("content-length")
        if expected is None or len(http_response.content) >= int(expected):
            return None
        return backoff(attempts)

    return needs_retry


def stop_past_deadline(deadline: float | None) -> None:
    """``needs-retry``: past ``deadline``, stop (DeadlinePassed) instead of backing off."""
    if deadline is not None and time.monotonic() >= deadline:
        raise backend.DeadlinePassed()


# botocore's own list of the error codes that mean "throttled".
_THROTTLED = ThrottledRetryableChecker()


def throttled(parsed_response: Mapping, attempts: int) -> bool:
    """Whether ``parsed_response`` (an answer to attempt number ``attempts``) is throttling."""
    return _THROTTLED.is_retryable(RetryContext(attempts, parsed_response=parsed_response))
