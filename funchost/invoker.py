"""Invoking a function, as the Python worker does.

Owns the call itself: a sync function runs in the thread of the trigger
that fired it (queue, timer and HTTP triggers each bring their own threads);
an `async def` function runs on the one event loop the host owns, so that
coroutines of every function share it as they do in the worker. Each
invocation gets an id and one log line with its outcome and duration, and a
failure is logged with its traceback. Invocations in flight are counted so
that shutdown can wait for them.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from funchost.catalog import FunctionSpec

log = logging.getLogger("funchost")


class InvocationFailed(Exception):
    """The function raised (already logged with its traceback); the trigger decides what that means."""


class Invoker:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="funchost-asyncio", daemon=True)
        self._in_flight = 0
        self._idle = threading.Condition()

    def start(self) -> None:
        self._loop_thread.start()

    def stop(self) -> None:
        if self._loop_thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
        self._loop.close()

    def invoke(self, spec: FunctionSpec, value: Any, trigger_details: str,
               convert: Callable[[Any], Any] | None = None) -> Any:
        """Call the function with `value` for its trigger parameter; return its result, passed through `convert`.

        A failure of `convert` (a result the trigger cannot use) fails the
        invocation, as the worker fails one whose output it cannot encode.
        """
        invocation_id = uuid.uuid4()
        started = time.monotonic()
        with self._idle:
            self._in_flight += 1
        try:
            result = self._call(spec, value)
            output = convert(result) if convert else result
        except Exception as error:
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms) %s",
                      spec.name, invocation_id, _ms_since(started), trigger_details, exc_info=True)
            raise InvocationFailed(f"Functions.{spec.name} failed: {error!r}") from error
        else:
            log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms) %s",
                     spec.name, invocation_id, _ms_since(started), trigger_details)
            return output
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation is running; False if some still are after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(timeout, 0.0))

    def _call(self, spec: FunctionSpec, value: Any) -> Any:
        arguments = {spec.argument: value}
        if spec.is_async:
            return asyncio.run_coroutine_threadsafe(spec.target(**arguments), self._loop).result()
        return spec.target(**arguments)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
