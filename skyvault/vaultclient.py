"""What an agent holds of its vault: this machine's credentials and private key, the keys
derived on this machine, and signed access to the service (queues, the vault's container, the
HTTP API); and `enrol`, which makes this machine one of the vault's with the vault credentials
file (an enrolment ticket).

The credentials carry create-only and add-only SAS, valid an hour and renewed by the machine's
signed request; reads only ever happen through the read-only SAS of a restore job. The
machine's private key (`machineKey` in its credentials document) is made here and never sent.
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

from shared import crypto, formats, identity, jsonfields, messages
from shared.adapters.sas_rest import Endpoint, SasContainer, insecure
from shared.ports import BlobContainer, BlobProperties, TransientError, pause_before_retry
from skyvault import exitcodes

API_TIMEOUT_S = 30
# A request the service answers 503 (a retryable refusal: its index or storage did not answer)
# or 429 is sent again, signed anew, up to API_ATTEMPTS times in all, after API_BACKOFF_S,
# doubling (with jitter). Every route an agent calls is idempotent: a commit, a run or a
# restore job is named by the agent, and a repeated commit answers the point as it stands.
API_ATTEMPTS = 4
API_BACKOFF_S = 1.0
RETRYABLE_STATUSES = (429, 503)
# Credentials (valid an hour: shared/service/machines.CREDENTIALS_TTL) are renewed when they
# expire sooner than this, before a command starts and before each use of their SAS during it.
RENEW_BEFORE = timedelta(minutes=20)
CONFLICT = 409  # what the API answers a refusal that contradicts the vault's state (functions/api.py)
UNAUTHENTICATED = 401  # not signed by a registered, unrevoked machine of the vault
FORBIDDEN = 403


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


def load_ticket(path: str) -> dict[str, Any]:
    """The vault credentials file (an enrolment ticket) at `path`, checked."""
    try:
        with open(path, "rb") as f:
            ticket = jsonfields.loads(f.read())
    except FileNotFoundError:
        raise CredentialsError(f"vault credentials file {path} does not exist") from None
    except ValueError as e:  # UnicodeDecodeError too
        raise CredentialsError(f"vault credentials file {path} is not JSON: {e}") from None
    try:
        parsed = messages.EnrolmentTicket.from_doc(ticket, f"vault credentials file {path}")
    except formats.MalformedMessage as e:
        raise CredentialsError(str(e)) from None
    if why := insecure(parsed.api_url):
        raise CredentialsError(f"vault credentials file {path}: the service's URL {why}")
    return ticket


def enrol(ticket: dict[str, Any], keys: crypto.VaultKeys, name: str, transport: "HttpTransport | None" = None,
          clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> tuple[dict[str, Any], str]:
    """Register this machine with the vault `ticket` names: a new key pair, whose public half
    and the passphrase's key check value go to the service with the ticket's secret. Returns
    the machine's credentials (with its private key, `machineKey`, for this machine only) and
    whether its passphrase became the vault's (KeyCheckAnswer.RECORDED) or matched it."""
    parsed = messages.EnrolmentTicket.from_doc(ticket)
    private_key = identity.new_private_key()
    public_key = identity.public_key_of(private_key)
    transport = transport or HttpTransport({"apiUrl": parsed.api_url})
    path = f"{transport.base_path}/api/tenants/{parsed.tenant_id}/vaults/{parsed.vault_id}/machines"
    body = json.dumps(messages.EnrolRequest(parsed.ticket_id, parsed.ticket_secret, name, public_key,
                                            keys.key_check_value()).to_doc()).encode()
    machine_id = identity.machine_id_of(public_key)
    def headers() -> dict[str, str]:
        return {**identity.sign_request(private_key, machine_id, "POST", path, None, body, clock()),
                "content-type": "application/json"}

    status, raw = transport.call("POST", path, None, headers, body)
    answer = _answer_of("POST machines", status, raw)
    if status == CONFLICT:
        raise CredentialsError("wrong passphrase: it does not match the one this vault was first used with")
    if status in (UNAUTHENTICATED, FORBIDDEN):
        raise CredentialsError(f"the service refused these vault credentials: {answer.get('error', answer)}")
    if status != 200:
        raise ApiError(f"POST machines: {status} {answer.get('error', answer)}", status)
    try:
        enrolled = messages.EnrolAnswer.from_doc(answer)
    except (formats.MalformedMessage, KeyError, TypeError) as e:
        raise ApiError(f"POST machines: the service's answer is not one this agent reads: {e}") from None
    urls = [enrolled.credentials.api_url, enrolled.credentials.blob_container_url]
    if why := next(filter(None, map(insecure, urls)), None):
        raise ApiError(f"POST machines: the service answered a URL this agent will not use: {why}")
    return {**enrolled.credentials.to_doc(), "machineKey": private_key}, enrolled.key_check


def _answer_of(what: str, status: int, raw: bytes) -> Any:
    try:
        answer = jsonfields.loads(raw)
    except ValueError:
        answer = {"error": raw[:200].decode(errors="replace")}
    return answer if isinstance(answer, dict) else {"error": answer}


class HttpTransport:
    """How an agent reaches the service in production: HTTPS to the function app's API (its
    queue messages too), blobs through SAS URLs."""

    def __init__(self, creds: dict[str, Any]):
        self._api_url = creds["apiUrl"]
        self._endpoint: Endpoint | None = None

    @property
    def _api(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = Endpoint(self._api_url, read_timeout=API_TIMEOUT_S)
        return self._endpoint

    @property
    def base_path(self) -> str:
        return self._api.path

    def call(self, method: str, path: str, params: dict[str, str] | None, headers: Callable[[], dict[str, str]],
             data: bytes) -> tuple[int, bytes]:
        """One API request; `headers` signs each attempt anew (a nonce is taken once)."""
        try:
            resp = self._api.request(f"{method} {path}", method, path, params, headers, data, retry_status=False)
        except TransientError as e:
            raise ApiError(f"the Skyvault service at {self._api_url} did not answer: {e}") from None
        return resp.status, resp.body

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
        self.machine_id: str = creds["machineId"]
        self._machine_key: str = creds["machineKey"]
        self.transport = transport or HttpTransport(creds)
        self._on_renew = on_renew
        self._renewing = threading.Lock()

    def ensure_fresh(self) -> None:
        """Renew the credentials if they expire within RENEW_BEFORE. Thread-safe: of the upload
        threads that find them expiring, one renews."""
        with self._renewing:
            if datetime.fromisoformat(self.creds["expiresAt"]) - self.clock() >= RENEW_BEFORE:
                return
            self.creds = {**self.renew_credentials(), "machineKey": self._machine_key}
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
                                                  "vaultId": self.vault_id, "machine": self.machine_id, **body,
                                                  "sig": "A" * 86 + "=="})
        return messages.sign(type(draft), self._machine_key,
                             **{f.name: getattr(draft, f.name) for f in dataclasses.fields(draft) if f.name != "sig"})

    def send(self, queue: str, body: dict[str, Any]) -> str:
        """`body` signed as this machine's message and posted to `queue` (POST messages/{queue},
        which queues it for the queue's function); its id."""
        message = self.sign(body)
        return self._call("POST", f"messages/{queue}", messages.QueuedAnswer.from_doc,
                          data=message.to_json().encode()).queued

    def api(self, method: str, subpath: str, body: dict | None = None,
            params: dict[str, str] | None = None, data: bytes | None = None) -> Any:
        """A signed request of the HTTP API (its body `body` as JSON, or the bytes `data`) and its
        JSON answer; ApiError, with the status, if refused."""
        path = f"{self.transport.base_path}/api/tenants/{self.tenant_id}/vaults/{self.vault_id}/{subpath}"
        if data is None:
            data = json.dumps(body).encode() if body is not None else b""
        def headers() -> dict[str, str]:
            return {**identity.sign_request(self._machine_key, self.machine_id, method, path, params, data,
                                            self.clock()), "content-type": "application/json"}

        for attempt in range(API_ATTEMPTS):
            if attempt:
                pause_before_retry(attempt, API_BACKOFF_S)
            status, raw = self.transport.call(method, path, params, headers, data)
            if status not in RETRYABLE_STATUSES:
                break
        if status == 200:
            try:
                return jsonfields.loads(raw)
            except ValueError:
                raise ApiError(f"{method} {subpath}: the service's answer is not JSON") from None
        error = _answer_of(f"{method} {subpath}", status, raw).get("error")
        if status == UNAUTHENTICATED:
            raise CredentialsError(f"{method} {subpath}: {error} (if this machine was revoked, an operator "
                                   f"issues new vault credentials and it registers again)")
        raise ApiError(f"{method} {subpath}: {status} {error}", status)

    # The service's API, typed: requests and answers are shared.messages' classes, and answers
    # are checked here as the service checks what it receives.

    def _call(self, method: str, subpath: str, parse: Callable[[Any], Any], body: dict | None = None,
              params: dict[str, str] | None = None, data: bytes | None = None) -> Any:
        answer = self.api(method, subpath, body, params, data)
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

    def start_restore(self, job_id: str, point_id: str, purpose: str = "restore") -> messages.JobView:
        return self._call("POST", "restores", messages.JobView.from_doc,
                          messages.RestoreRequest(job_id, point_id, purpose).to_doc())

    def key_check(self, value: str) -> messages.KeyCheckAnswer:
        """Whether this passphrase's key check value matches the vault's (the service never tells
        the value: it is recorded once, by the first machine's registration)."""
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

    def create(self, *, exist_ok: bool = True) -> None:
        self._current().create(exist_ok=exist_ok)

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
