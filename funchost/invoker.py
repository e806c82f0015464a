"""Invoking a function, as the Python worker does, within host.json's functionTimeout.

Owns the call itself: a sync function runs in a thread of its own (the worker runs sync
functions in a thread pool, not in the trigger's thread); an `async def` function runs on the
one event loop the host owns, so that coroutines of every function share it as they do in the
worker. Each invocation gets an id and one log line with its outcome and duration, and a
failure is logged with its traceback. Invocations in flight are counted so that shutdown can
wait for them.

Words:
- functionTimeout: an invocation still running at its deadline fails with a timeout, logged as
  the host logs it, and its trigger treats that as any failure: a queue message is released (or
  poisoned), a timer run has failed, an HTTP caller gets 500. In Azure the host then restarts
  the language worker process, which ends the function ("Function app timeout duration" on
  Learn; azure-functions-host#5794). A Python thread cannot be stopped, so this host stops
  waiting instead: a coroutine is cancelled, a sync function's thread runs on with what it
  returns discarded (a warning says when it ended), and neither counts as in flight any more,
  as nothing is in flight after a worker restart. Unlike in Azure, whatever that thread still
  does after its timeout is done; and the other invocations the restart would have ended go on.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from funchost.catalog import FunctionSpec
from funchost.config import format_timespan

log = logging.getLogger("funchost")


class InvocationFailed(Exception):
    """The function raised or timed out (already logged); the trigger decides what that means."""


class FunctionTimeout(Exception):
    """The function ran past functionTimeout (the host's FunctionTimeoutException)."""


class Invocation:
    """One call of a function, under way or ended: `wait` for its end, then take its `result`."""

    def __init__(self, spec: FunctionSpec, trigger_details: str, timeout: float | None,
                 on_end: Callable[[Invocation], None]) -> None:
        self.spec = spec
        self.id = uuid.uuid4()
        self.trigger_details = trigger_details
        self.started = time.monotonic()
        self.timeout = timeout
        self.deadline = None if timeout is None else self.started + timeout
        self._on_end = on_end
        self._lock = threading.Lock()
        self._settled = False
        self._ended = threading.Event()
        self._output: Any = None
        self._error: BaseException | None = None
        self._cancel: Callable[[], object] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the invocation has ended (returned, failed or timed out); False if not within `timeout`."""
        return self._ended.wait(timeout)

    def result(self) -> Any:
        """What the function returned, once the invocation has ended; InvocationFailed if it failed or timed out."""
        self._ended.wait()
        if self._error is not None:
            raise InvocationFailed(f"Functions.{self.spec.name} failed: {self._error!r}") from self._error
        return self._output

    def cancel_with(self, cancel: Callable[[], object]) -> None:
        """What ends the function at its timeout, if anything can (a coroutine's task)."""
        with self._lock:
            self._cancel = cancel
            overdue = self._settled and isinstance(self._error, FunctionTimeout)
        if overdue:
            cancel()

    def returned(self, output: Any = None, error: BaseException | None = None) -> None:
        """The function returned `output` (or raised `error`)."""
        if not self._settle(output, error):
            log.warning("Functions.%s (Id=%s) %s %dms after its timeout; that is discarded", self.spec.name, self.id,
                        f"raised {error!r}" if error else "returned", _ms_since(self.deadline or self.started))
            return
        if error is None:
            log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms) %s",
                     self.spec.name, self.id, _ms_since(self.started), self.trigger_details)
        else:
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms) %s",
                      self.spec.name, self.id, _ms_since(self.started), self.trigger_details, exc_info=error)
        self._end()

    def expire(self) -> None:
        """The deadline has come: fail the invocation unless it has ended, in the host's words."""
        timeout = format_timespan(self.timeout or 0)
        if not self._settle(None, FunctionTimeout(f"Timeout value of {timeout} was exceeded by function: "
                                                  f"Functions.{self.spec.name}")):
            return
        log.error("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
                  timeout, self.spec.name, self.id)
        log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms) %s: %s", self.spec.name, self.id,
                  _ms_since(self.started), self.trigger_details, self._error)
        with self._lock:
            cancel = self._cancel
        log.warning("A function timeout has occurred. In Azure the worker process restarts, which ends the function; "
                    "here %s", "its coroutine is cancelled" if cancel else
                    "its thread cannot be stopped: it runs on, and what it returns is discarded")
        if cancel is not None:
            cancel()
        self._end()

    def _settle(self, output: Any, error: BaseException | None) -> bool:
        # The first of the function's end and its deadline decides the outcome.
        with self._lock:
            if self._settled:
                return False
            self._settled, self._output, self._error = True, output, error
            return True

    def _end(self) -> None:
        self._on_end(self)
        self._ended.set()


class Invoker:
    """Runs invocations; `function_timeout` is host.json's functionTimeout in seconds (None: no timeout)."""

    def __init__(self, function_timeout: float | None = None) -> None:
        self.function_timeout = function_timeout
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="funchost-asyncio", daemon=True)
        self._in_flight = 0
        self._idle = threading.Condition()
        # Deadlines of running invocations, earliest first; an entry whose invocation has ended is skipped.
        self._deadlines: list[tuple[float, uuid.UUID]] = []
        self._timed: dict[uuid.UUID, Invocation] = {}
        self._deadlines_changed = threading.Condition()
        self._stopping = False
        self._watchdog = threading.Thread(target=self._expire_overdue, name="funchost-timeouts", daemon=True)

    def start(self) -> None:
        self._loop_thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        with self._deadlines_changed:
            self._stopping = True
            self._deadlines_changed.notify_all()
        if self._watchdog.is_alive():
            self._watchdog.join()
        if self._loop_thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
        self._loop.close()

    def invoke(self, spec: FunctionSpec, value: Any, trigger_details: str,
               convert: Callable[[Any], Any] | None = None) -> Any:
        """Call the function and wait for its result (see `submit`); InvocationFailed if it fails or times out."""
        return self.submit(spec, value, trigger_details, convert).result()

    def submit(self, spec: FunctionSpec, value: Any, trigger_details: str,
               convert: Callable[[Any], Any] | None = None) -> Invocation:
        """Start calling the function with `value` for its trigger parameter; its result is passed through `convert`.

        A failure of `convert` (a result the trigger cannot use) fails the
        invocation, as the worker fails one whose output it cannot encode.
        """
        invocation = Invocation(spec, trigger_details, self.function_timeout, self._ended)
        with self._idle:
            self._in_flight += 1
        if invocation.deadline is not None:
            with self._deadlines_changed:
                self._timed[invocation.id] = invocation
                heapq.heappush(self._deadlines, (invocation.deadline, invocation.id))
                self._deadlines_changed.notify_all()
        if spec.is_async:
            future = asyncio.run_coroutine_threadsafe(self._call_async(invocation, value, convert), self._loop)
            invocation.cancel_with(future.cancel)
        else:
            threading.Thread(target=self._call_sync, args=(invocation, value, convert),
                             name=f"function-{spec.name}", daemon=True).start()
        return invocation

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation is running; False if some still are after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(timeout, 0.0))

    @staticmethod
    def _call_sync(invocation: Invocation, value: Any, convert: Callable[[Any], Any] | None) -> None:
        spec = invocation.spec
        try:
            output = _converted(spec.target(**{spec.argument: value}), convert)
        except BaseException as error:  # even a SystemExit must end the invocation, not only its thread
            invocation.returned(error=error)
        else:
            invocation.returned(output)

    @staticmethod
    async def _call_async(invocation: Invocation, value: Any, convert: Callable[[Any], Any] | None) -> None:
        spec = invocation.spec
        try:
            output = _converted(await spec.target(**{spec.argument: value}), convert)
        except BaseException as error:
            invocation.returned(error=error)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            invocation.returned(output)

    def _ended(self, invocation: Invocation) -> None:
        with self._deadlines_changed:
            self._timed.pop(invocation.id, None)
            if len(self._deadlines) > 2 * len(self._timed) + 64:
                # Drop the ended invocations' entries now rather than at their deadlines, up to 30 minutes on.
                self._deadlines = [entry for entry in self._deadlines if entry[1] in self._timed]
                heapq.heapify(self._deadlines)
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _expire_overdue(self) -> None:
        while True:
            with self._deadlines_changed:
                while not self._stopping and not (self._deadlines and self._deadlines[0][0] <= time.monotonic()):
                    self._deadlines_changed.wait(self._deadlines[0][0] - time.monotonic() if self._deadlines else None)
                if self._stopping:
                    return
                _, invocation_id = heapq.heappop(self._deadlines)
                invocation = self._timed.get(invocation_id)
            if invocation is not None:
                invocation.expire()


def _converted(result: Any, convert: Callable[[Any], Any] | None) -> Any:
    return convert(result) if convert else result


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
