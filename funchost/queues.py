"""Queue triggers, following the Storage Queues extension's QueueListener and QueueProcessor.

Owns polling one queue for one function and settling each message:

- Poll: receive up to batchSize messages under a lease (the messages stay
  invisible for `lease` seconds, renewed at half-time while the function
  runs); fetch again as soon as no more than newBatchThreshold messages are
  in flight, so at most batchSize + newBatchThreshold run at once. An empty
  queue is polled with exponential backoff from 100 ms up to
  maxPollingInterval, reset when a message arrives.
- Settle: success deletes the message. A failure (the function raised, or
  ran past functionTimeout) releases it with visibilityTimeout, so that it
  comes back dequeued once more, or once its dequeue count has reached
  maxDequeueCount,
  copies its text unchanged to `<queue>-poison` (created when needed) and
  deletes it. A message already dequeued more than maxDequeueCount times
  (a host died while running it) goes to poison without a run, and so does
  a message that is not valid base64 under base64 encoding: retrying cannot
  fix its encoding.
"""
from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from funchost.catalog import FunctionSpec
from funchost.config import QueueOptions
from funchost.invoker import InvocationFailed, Invoker

log = logging.getLogger("funchost")

MIN_POLLING_INTERVAL = 0.1
# The extension's QueueListener holds each message for 10 minutes and renews at half-time.
DEFAULT_LEASE = 600.0


@dataclass(eq=False)
class _Lease:
    """A message this host holds; its pop receipt changes at every renewal."""

    message: StoredMessage
    pop_receipt: str
    renewed_at: float
    settled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueueListener:
    def __init__(self, spec: FunctionSpec, queue: QueueClient, poison_queue: QueueClient,
                 options: QueueOptions, invoker: Invoker, lease: float = DEFAULT_LEASE) -> None:
        self.spec = spec
        self._queue = queue
        self._poison_queue = poison_queue
        self._options = options
        self._invoker = invoker
        self._lease = lease
        self._stopping = threading.Event()
        self._in_flight: set[_Lease] = set()
        self._capacity = threading.Condition()
        self._workers = ThreadPoolExecutor(options.max_concurrency, thread_name_prefix=f"queue-{spec.name}")
        self._poller = threading.Thread(target=self._poll, name=f"poll-{spec.name}", daemon=True)
        self._renewer = threading.Thread(target=self._renew, name=f"renew-{spec.name}", daemon=True)

    def start(self) -> None:
        try:
            self._queue.create_queue()
        except ResourceExistsError:
            pass
        self._poller.start()
        self._renewer.start()

    def stop(self) -> None:
        """Stop fetching messages; those in flight go on."""
        self._stopping.set()
        with self._capacity:
            self._capacity.notify_all()

    def join(self, deadline: float) -> bool:
        """Wait until the messages in flight are settled, until `deadline` (monotonic); False if some are not."""
        if self._poller.is_alive():
            self._poller.join(max(deadline - time.monotonic(), 0))
        with self._capacity:
            drained = self._capacity.wait_for(lambda: not self._in_flight,
                                              timeout=max(deadline - time.monotonic(), 0))
        if not drained:
            log.warning("Functions.%s: %d queue messages still running at shutdown; their leases will expire",
                        self.spec.name, len(self._in_flight))
        self._workers.shutdown(wait=False)
        return drained

    def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            with self._capacity:
                self._capacity.wait_for(
                    lambda: self._stopping.is_set() or len(self._in_flight) <= self._options.new_batch_threshold)
            if self._stopping.is_set():
                return
            try:
                batch = self._receive()
            except AzureError as error:
                log.warning("Functions.%s: cannot read queue %s: %s", self.spec.name, self._queue.queue_name, error)
                batch = []
            if batch:
                delay = MIN_POLLING_INTERVAL
                for message in batch:
                    self._dispatch(message)
            else:
                self._stopping.wait(delay)
                delay = min(delay * 2, self._options.max_polling_interval)

    def _receive(self) -> list[StoredMessage]:
        # One Get Messages call: iterating the pager would ask again until a page comes back empty.
        pages = self._queue.receive_messages(messages_per_page=self._options.batch_size,
                                             visibility_timeout=round(self._lease)).by_page()
        return list(next(pages, []))

    def _dispatch(self, message: StoredMessage) -> None:
        lease = _Lease(message, message.pop_receipt, time.monotonic())
        with self._capacity:
            self._in_flight.add(lease)
        self._workers.submit(self._process, lease)

    def _process(self, lease: _Lease) -> None:
        message = lease.message
        try:
            if message.dequeue_count > self._options.max_dequeue_count:
                self._poison(lease, f"was dequeued {message.dequeue_count} times, more than MaxDequeueCount")
                return
            try:
                body = self._decode(message.content)
            except ValueError:
                self._poison(lease, "is not valid base64 (host.json messageEncoding), so it was not run")
                return
            try:
                self._invoker.invoke(self.spec, self._trigger_value(message, body),
                                     f"queue={self._queue.queue_name} message={message.id} "
                                     f"dequeue_count={message.dequeue_count}")
            except InvocationFailed:
                if message.dequeue_count >= self._options.max_dequeue_count:
                    self._poison(lease, f"has reached MaxDequeueCount of {self._options.max_dequeue_count}")
                else:
                    self._release(lease)
            else:
                self._settle(lease, lambda receipt: self._queue.delete_message(message.id, receipt))
        except Exception:
            # The lease runs out and the message comes back, as with any host that loses its storage.
            log.exception("Functions.%s: could not settle message %s", self.spec.name, message.id)
        finally:
            with self._capacity:
                self._in_flight.discard(lease)
                self._capacity.notify_all()

    def _decode(self, text: str) -> bytes:
        if self._options.message_encoding == "none":
            return text.encode("utf-8")
        # .NET's Convert.FromBase64String, which the extension uses, skips white space.
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error as error:
            raise ValueError(str(error)) from None

    @staticmethod
    def _trigger_value(message: StoredMessage, body: bytes) -> TriggerMessage:
        # The worker's class: the top-level azure.functions.QueueMessage takes no dequeue_count.
        return TriggerMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on, expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)

    def _release(self, lease: _Lease) -> None:
        visibility = round(self._options.visibility_timeout)
        self._settle(lease, lambda receipt: self._queue.update_message(
            lease.message.id, receipt, visibility_timeout=visibility))

    def _poison(self, lease: _Lease, reason: str) -> None:
        log.warning("Functions.%s: message %s %s; moving it to queue '%s'",
                    self.spec.name, lease.message.id, reason, self._poison_queue.queue_name)
        try:
            self._poison_queue.send_message(lease.message.content)
        except ResourceNotFoundError:
            try:
                self._poison_queue.create_queue()
            except ResourceExistsError:
                pass
            self._poison_queue.send_message(lease.message.content)
        self._settle(lease, lambda receipt: self._queue.delete_message(lease.message.id, receipt))

    @staticmethod
    def _settle(lease: _Lease, action) -> None:
        # Under the lease's lock, so that a renewal cannot change the pop receipt in between.
        with lease.lock:
            lease.settled = True
            action(lease.pop_receipt)

    def _renew(self) -> None:
        half = self._lease / 2
        while not (self._stopping.is_set() and not self._in_flight):
            time.sleep(min(half / 2, 1.0))
            with self._capacity:
                leases = list(self._in_flight)
            for lease in leases:
                if time.monotonic() - lease.renewed_at >= half:
                    self._extend(lease)

    def _extend(self, lease: _Lease) -> None:
        with lease.lock:
            if lease.settled:
                return
            try:
                updated = self._queue.update_message(lease.message.id, lease.pop_receipt,
                                                     visibility_timeout=round(self._lease))
            except AzureError as error:
                log.warning("Functions.%s: could not renew the lease of message %s: %s",
                            self.spec.name, lease.message.id, error)
                return
            lease.pop_receipt = updated.pop_receipt
            lease.renewed_at = time.monotonic()
