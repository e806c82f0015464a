"""What both blob adapters (the SDK's and the SAS-only REST one) do alike around Copy Blob:
waiting for a copy to complete, and naming the error when the source could not be read."""
from __future__ import annotations

import time
from typing import Callable

from shared.ports import BlobNotFound, BlobProperties, StorageError, TransientError, transient_status

# Copy Blob completes in the background; within one account or region it is
# usually done at once, across regions it may take a while.
COPY_WAIT_S = 60.0
_POLL_FIRST_S, _POLL_MAX_S = 0.1, 2.0


def wait_for_copy(what: str, poll: Callable[[], tuple[str | None, str | None, BlobProperties]]) -> BlobProperties:
    """Poll the target's (copy status, status description, properties) until the copy is done."""
    deadline = time.monotonic() + COPY_WAIT_S
    pause = _POLL_FIRST_S
    while True:
        status, description, props = poll()
        # No copy status: a Put Blob has replaced the copy since; the blob is there.
        if status in ("success", None):
            return props
        if status != "pending":
            raise StorageError(f"{what}: the copy {status}: {description}")
        if time.monotonic() + pause > deadline:
            # The service goes on copying; a retry finds it done, or still pending.
            raise TransientError(f"{what}: the copy is still pending after {COPY_WAIT_S:.0f} s")
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_S)


def copy_source_error(what: str, status: int) -> Exception:
    """The error for a copy whose source answered HTTP `status` (CannotVerifyCopySource): a
    source that may not be read is a PermissionError, never BlobNotFound, so that a wrong or
    expired SAS does not pass for a lost source."""
    if status == 404:
        return BlobNotFound(f"{what}: the source does not exist")
    if status in (401, 403):
        return PermissionError(f"{what}: the source URL does not allow reading it (no \"r\", or expired)")
    if transient_status(status):
        return TransientError(f"{what}: the source answered HTTP {status}")
    return StorageError(f"{what}: the source answered HTTP {status}")
