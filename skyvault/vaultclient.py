"""What an agent holds of its vault: the credentials file, the keys derived on this
machine, and signed access to the service (queues, the vault's container, the HTTP API).

The credentials carry create-only and add-only SAS; reads only ever happen
through the read-only SAS of a restore job.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from shared import crypto, formats, messages
from shared.messages import Credentials
from shared.adapters.sas_rest import Endpoint, SasContainer, SasQueueSender
from shared.ports import BlobContainer, BlobProperties, TransientError
from skyvault import exitcodes

API_TIMEOUT_S = 30
# Credentials are renewed when they expire sooner than this, before a command starts and before
# each use of their SAS during it: a backup of a terabyte outlives a day's SAS.
RENEW_BEFORE = timedelta(hours=2)
CONFLICT = 409  # what the API answers a refusal that contradicts the vault's state (functions/api.py)


class AgentError(Exception):
    """An error the CLI shows as it is, with exit code `exit_code`."""

    exit_code = exitcodes.FAILURE


class ApiError(AgentError):
    """The service refused a request; `status` is its HTTP status (0: it did not answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class CredentialsError(AgentError):
    exit_code = exitcodes.CREDENTIALS


def load_credentials(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            creds = json.load(f)
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CredentialsError(f"credentials file {path} is not JSON: {e}") from None
    try:
        Credentials.from_doc(creds, f"credentials file {path}")
    except formats.MalformedMessage as e:
        raise CredentialsError(str(e)) from None
    return creds


class HttpTransport:
    """How an agent reaches the service in production: HTTPS to the function app's API, Put
    Message through the queues' add-only SAS, blobs through SAS URLs."""

    def __init__(self, creds: dict[str, Any]):
        self._api_url = creds["apiUrl"]
        self._queue_urls = creds["queueUrls"]
        self._endpoint: Endpoint | None = None
        self._queues: dict[str, SasQueueSender] = {}

    def update(self, creds: dict[str, Any]) -> None:
        """Renewed credentials: their queue SAS from now on."""
        self._queue_urls, self._queues = creds["queueUrls"], {}

    @property
    def _api(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = Endpoint(self._api_url, read_timeout=API_TIMEOUT_S)
        return self._endpoint

    @property
    def base_path(self) -> str:
        return self._api.path

    def call(self, method: str, path: str, params: dict[str, str] | None, headers: dict[str, str],
             data: bytes) -> tuple[int, bytes]:
        try:
            resp = self._api.request(f"{method} {path}", method, path, params, headers, data, retry_status=False)
        except TransientError as e:
            raise ApiError(f"the Skyvault service at {self._api_url} did not answer: {e}") from None
        return resp.status, resp.body

    def send(self, queue: str, text: str) -> None:
        if queue not in self._queues:
            self._queues[queue] = SasQueueSender(self._queue_urls[queue])
        # The Functions host reads base64 (host.json messageEncoding).
        self._queues[queue].send(base64.b64encode(text.encode()).decode())

    @staticmethod
    def container(url: str) -> BlobContainer:
        return SasContainer(url)


class AgentVault:
    """`on_renew` learns each renewal of the credentials (to keep them on disk)."""

    def __init__(self, creds: dict[str, Any], keys: crypto.VaultKeys | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 transport: HttpTransport | None = None,
                 on_renew: Callable[[dict[str, Any]], None] = lambda creds: None):
        self.creds = creds
        self.keys = keys
        self.clock = clock
        self.tenant_id: str = creds["tenantId"]
        self.vault_id: str = creds["vaultId"]
        self._signing_key = bytes.fromhex(creds["signingKey"])
        self.transport = transport or HttpTransport(creds)
        self._on_renew = on_renew
        self._renewing = threading.Lock()

    def ensure_fresh(self) -> None:
        """Renew the credentials if they expire within RENEW_BEFORE. Thread-safe: of the upload
        threads that find them expiring, one renews."""
        with self._renewing:
            if datetime.fromisoformat(self.creds["expiresAt"]) - self.clock() >= RENEW_BEFORE:
                return
            self.creds = self.renew_credentials()
            self.transport.update(self.creds)
            self._on_renew(self.creds)

    @staticmethod
    def derive_keys(creds: dict[str, Any], passphrase: str) -> crypto.VaultKeys:
        kdf = creds["kdf"]
        return crypto.derive_keys(passphrase, base64.b64decode(kdf["salt"]), kdf)

    @property
    def container(self) -> BlobContainer:
        """The vault's container through the create-only SAS, renewed as it nears its expiry."""
        return RenewingContainer(self)

    def read_container(self, url: str) -> BlobContainer:
        """A container through a restore job's read-only SAS."""
        return self.transport.container(url)

    def sign(self, body: dict[str, Any]) -> messages.SignedMessage:
        """`body` (its type's fields, as JSON) as a signed message of this vault, checked against
        its schema as the service will check it; `body` gets an id if it has none."""
        body.setdefault("id", uuid.uuid4().hex)
        draft = messages.signed_message_from_doc({"v": formats.SCHEMA_VERSION, "tenantId": self.tenant_id,
                                                  "vaultId": self.vault_id, **body, "sig": "0" * 64})
        return messages.sign(type(draft), self._signing_key,
                             **{f.name: getattr(draft, f.name) for f in dataclasses.fields(draft) if f.name != "sig"})

    def send(self, queue: str, body: dict[str, Any]) -> str:
        self.ensure_fresh()
        message = self.sign(body)
        self.transport.send(queue, message.to_json())
        return message.id

    def api(self, method: str, subpath: str, body: dict | None = None,
            params: dict[str, str] | None = None) -> Any:
        """A signed request of the HTTP API and its JSON answer; ApiError, with the status, if refused."""
        path = f"{self.transport.base_path}/api/tenants/{self.tenant_id}/vaults/{self.vault_id}/{subpath}"
        data = json.dumps(body).encode() if body is not None else b""
        headers = formats.sign_request(self._signing_key, method, path, data, self.clock())
        headers["content-type"] = "application/json"
        status, raw = self.transport.call(method, path, params, headers, data)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {"error": raw[:200].decode(errors="replace")}
        if status != 200:
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ApiError(f"{method} {subpath}: {status} {error}", status)
        return answer

    # The service's API, typed: requests and answers are shared.messages' classes, and answers
    # are checked here as the service checks what it receives.

    def _call(self, method: str, subpath: str, parse: Callable[[Any], Any], body: dict | None = None,
              params: dict[str, str] | None = None) -> Any:
        answer = self.api(method, subpath, body, params)
        try:
            return parse(answer)
        except (formats.MalformedMessage, KeyError, TypeError) as e:
            raise ApiError(f"{method} {subpath}: the service's answer is not one this agent reads: {e}") from None

    def lookup(self, ids: list[str]) -> messages.LookupAnswer:
        """Which of `ids` the vault holds verified, and which it rejected."""
        return self._call("POST", "chunks/lookup", messages.LookupAnswer.from_doc,
                          messages.LookupRequest(tuple(ids)).to_doc())

    def commit(self, request: messages.CommitRequest) -> messages.PointView:
        return self._call("POST", "commits", messages.PointView.from_doc, request.to_doc())

    def points(self, item: str | None = None) -> list[messages.PointView]:
        return self._call("GET", "points", lambda doc: [messages.PointView.from_doc(p) for p in doc["points"]],
                          params={"item": item} if item else None)

    def start_restore(self, job_id: str, point_id: str) -> messages.JobView:
        return self._call("POST", "restores", messages.JobView.from_doc,
                          messages.RestoreRequest(job_id, point_id).to_doc())

    def key_check(self, value: str) -> messages.KeyCheckAnswer:
        """Record this passphrase's key check value, or learn whether it matches the recorded one."""
        try:
            return self._call("POST", "keycheck", messages.KeyCheckAnswer.from_doc,
                              messages.KeyCheckRequest(value).to_doc())
        except ApiError as e:
            if e.status == CONFLICT:
                raise CredentialsError("wrong passphrase: it does not match the one this vault was first "
                                       "used with") from None
            raise

    def renew_credentials(self) -> dict[str, Any]:
        """Fresh credentials (new SAS and expiry), checked as a credentials file is."""
        def checked(doc: Any) -> dict[str, Any]:
            messages.Credentials.from_doc(doc, "renewed credentials")
            return doc

        return self._call("POST", "credentials", checked)

    def chunk_epoch(self) -> int:
        return self._call("GET", "chunks/epoch", messages.EpochAnswer.from_doc).chunk_epoch

    def start_run(self, run_id: str, item: str, parent_point_id: str | None) -> messages.RunAnswer:
        """Tell the service this backup runs (garbage collection then keeps what it may use)."""
        return self._call("POST", "runs", messages.RunAnswer.from_doc,
                          messages.RunRequest(run_id, item, parent_point_id).to_doc())

    def heartbeat(self, run_id: str) -> messages.RunAnswer:
        return self._call("POST", f"runs/{run_id}", messages.RunAnswer.from_doc, {})

    def status(self) -> messages.VaultStatus:
        return self._call("GET", "status", messages.VaultStatus.from_doc)

    def bill(self, month: str | None = None) -> dict[str, Any]:
        """This vault's statement of `month` (YYYY-MM; default this month so far): its invoice
        document and the usage it priced (shared/service/bills.py)."""
        def parse(doc: Any) -> dict[str, Any]:
            if not isinstance(doc, dict) or not isinstance(doc.get("invoice"), dict):
                raise formats.MalformedMessage("a statement holds an invoice")
            return doc

        return self._call("GET", "bill", parse, params={"month": month} if month else None)

    def item_schedule(self, item: str) -> messages.ItemSchedule:
        """When the policy of `item` (a NAME_ID) backs it up: its schedule and time zone."""
        answer = self._call("GET", f"items/{item}/schedule", messages.ItemSchedule.from_doc)
        if answer.item != item:
            raise ApiError(f"GET items/{item}/schedule: the service answered the schedule of item {answer.item}")
        return answer

    def wait_for(self, what: str, poll: Callable[[], Any], timeout_s: float) -> Any:
        """Poll until `poll` returns something truthy; raise AgentError naming `what` on timeout."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            result = poll()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AgentError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def check_chunks(self, ids: list[str]) -> messages.ChunkCheckAnswer:
        """The service's check of these chunks (at most CHECK_MAX_IDS): their index records, and
        their copies' presence, size and MD5 property in each region."""
        return self._call("POST", "chunks/check", messages.ChunkCheckAnswer.from_doc,
                          messages.ChunkCheckRequest(tuple(ids)).to_doc())

    def report_damage(self, reports: list[messages.DamageReport]) -> messages.DamageAnswer:
        """Tell the service of bad copies (at most DAMAGE_MAX_REPORTS); it heals them or marks
        their chunks damaged, and answers what it did about each."""
        return self._call("POST", "chunks/damage", messages.DamageAnswer.from_doc,
                          messages.DamageRequest(tuple(reports)).to_doc())


class RenewingContainer(BlobContainer):
    """The vault's container through the agent's current credentials: each call first renews
    them if they expire soon, and goes through the SAS they hold then."""

    def __init__(self, vault: AgentVault):
        self._vault = vault
        self._opened: tuple[str, BlobContainer] | None = None
        self._lock = threading.Lock()

    def _current(self) -> BlobContainer:
        self._vault.ensure_fresh()
        url = self._vault.creds["blobContainerUrl"]
        with self._lock:
            if self._opened is None or self._opened[0] != url:
                self._opened = (url, self._vault.transport.container(url))
            return self._opened[1]

    @property
    def name(self) -> str:
        return self._current().name

    def create(self) -> None:
        self._current().create()

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        return self._current().put(name, data, overwrite=overwrite, md5=md5)

    def properties(self, name: str) -> BlobProperties:
        return self._current().properties(name)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._current().read(name, offset, length)

    def read_head(self, name: str, length: int) -> tuple[bytes, BlobProperties]:
        return self._current().read_head(name, length)

    def delete(self, name: str) -> None:
        self._current().delete(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._current().list(prefix)

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        return self._current().list_sizes(prefix)

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        return self._current().copy_from(name, source_url)
