"""One API call's attempts: the botocore hooks every request of a client passes through.

A call (:class:`InFlight`) is sent with :func:`send`; on each attempt the hooks wait for its
rate-limit slot and record the send, count attempts and throttling answers, and keep the
first bytes of a body that is no Cognito answer.  Whether and when an attempt is retried
(a body cut short, never past the call's deadline) is the retry policy's, :mod:`.retries`.
A client is shared by threads, a call's deadline is its own: the hooks find the call in a
thread-local.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping

from ..errors import ERROR_BODY
from ..pg import backend
from . import retries
from .ratelimit import Abandoned, Ticket


def register_hooks(client, max_attempts: int) -> None:
    """Register the hooks on a new ``cognito-idp`` client (its retries stop after
    ``max_attempts``, as its config says)."""
    events = client.meta.events
    retries.register(events, max_attempts, _deadline)
    events.register("before-send.cognito-idp", _count_attempt)
    events.register("before-parse.cognito-idp", _keep_error_body)
    events.register("response-received.cognito-idp", _count_throttled)


def _keep_error_body(response_dict=None, customized_response_dict=None, **_):
    """``before-parse``: keep the first bytes of an error's or a non-JSON body in the parsed
    response, to say what came back when it is no Cognito answer (errors.not_cognito_answer)."""
    if not response_dict or customized_response_dict is None:
        return
    content_type = (response_dict.get("headers") or {}).get("content-type", "")
    if response_dict.get("status_code", 200) >= 300 or "json" not in content_type.lower():
        customized_response_dict[ERROR_BODY] = bytes(response_dict.get("body") or b"")[:512]


@dataclasses.dataclass
class InFlight:
    """One API call being sent: its rate-limit ticket, deadline (``time.monotonic()``),
    attempts so far, how many of them were throttled and the seconds they waited for their
    rate-limit slots; ``abandoned`` once the caller stopped waiting for it."""

    ticket: Ticket
    deadline: float
    attempts: int = 0
    throttled: int = 0
    waited: float = 0.0
    abandoned: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    #: Called once, as the first attempt is sent (on the sending thread): the call counts
    #: as a request from then on, and never if it is abandoned before.
    on_send: Callable[[], None] | None = None

    def abandon(self) -> None:
        """No attempt may start any more; an unused rate-limit slot goes back."""
        with self.lock:
            self.abandoned = True
            self.ticket.release()

    def next_ticket(self) -> Ticket:
        """The ticket of the attempt about to be sent: a retry reserves a slot of its own."""
        with self.lock:
            if self.abandoned:
                raise Abandoned("cognito_fdw: the request was abandoned before its retry")
            if self.attempts:
                self.ticket = self.ticket.renewed()
            return self.ticket


# The call the current thread is sending (:func:`send` sets it in the sending thread), which
# the botocore handlers below read: a client is shared, a call's deadline is its own.
_sending = threading.local()


def _count_attempt(**_):
    """``before-send``, the last moment before the request goes out, built and signed:
    wait for its rate-limit slot here, so that only the send itself follows it, and record
    the send (a retry reserves a slot of its own); count the attempt.  None starts past the
    deadline (a retry whose backoff or slot would run over it)."""
    call = getattr(_sending, "call", None)
    if call is None:
        return None
    ticket = call.next_ticket()
    try:
        if max(time.monotonic(), ticket.slot) >= call.deadline:
            raise backend.DeadlinePassed()
        waiting = time.monotonic()
        ticket.wait()
        call.waited += time.monotonic() - waiting
        with call.lock:
            # Abandoned while it waited for its slot: nothing is sent.
            if call.abandoned:
                raise Abandoned("cognito_fdw: the request was abandoned before it was sent")
        ticket.start()  # refuses a slot whose scan ended (a LIMIT reached while reading ahead)
    except BaseException:
        ticket.release()
        raise
    call.attempts += 1
    if call.attempts == 1 and call.on_send is not None:
        call.on_send()  # only now does the call count as a request
    return None


def _count_throttled(parsed_response=None, **_):
    """``response-received`` (every attempt): count an answer that says throttled."""
    call = getattr(_sending, "call", None)
    if (
        call is not None
        and parsed_response is not None
        and retries.throttled(parsed_response, call.attempts)
    ):
        call.throttled += 1


def _deadline() -> float | None:
    """The deadline (``time.monotonic()``) of the call the current thread is sending."""
    call = getattr(_sending, "call", None)
    return None if call is None else call.deadline


def send(call: InFlight, method: Callable[..., Mapping], params: Mapping) -> Mapping:
    """``method(**params)`` (a client's operation), each attempt paced, counted and held to
    the deadline of ``call``."""
    _sending.call = call
    try:
        return method(**params)
    finally:
        _sending.call = None
