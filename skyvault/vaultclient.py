"""What an agent holds of its vault: the credentials file, the keys derived on this
machine, and signed access to the service (queues, the vault's container, the HTTP API).

The credentials carry create-only and add-only SAS; reads only ever happen
through the read-only SAS of a restore job.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from shared import crypto, formats
from shared.adapters.sas_rest import Endpoint, SasContainer, SasQueueSender
from shared.ports import BlobContainer, TransientError

API_TIMEOUT_S = 30


class AgentError(Exception):
    """An error the CLI shows as it is, with exit code `exit_code`."""

    exit_code = 1


class ApiError(AgentError):
    pass


class CredentialsError(AgentError):
    exit_code = 2


def load_credentials(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            creds = json.load(f)
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CredentialsError(f"credentials file {path} is not JSON: {e}") from None
    if not isinstance(creds, dict) or creds.get("kind") != "skyvault-agent-credentials":
        raise CredentialsError(f"{path} is not a Skyvault vault credentials file")
    missing = [k for k in ("tenantId", "vaultId", "kdf", "signingKey", "apiUrl", "blobContainerUrl", "queueUrls")
               if k not in creds]
    if missing:
        raise CredentialsError(f"credentials file {path} lacks {', '.join(missing)}")
    return creds


class AgentVault:
    def __init__(self, creds: dict[str, Any], keys: crypto.VaultKeys | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.creds = creds
        self.keys = keys
        self.clock = clock
        self.tenant_id: str = creds["tenantId"]
        self.vault_id: str = creds["vaultId"]
        self._signing_key = bytes.fromhex(creds["signingKey"])
        self._api_endpoint: Endpoint | None = None
        self._queues: dict[str, SasQueueSender] = {}

    @staticmethod
    def derive_keys(creds: dict[str, Any], passphrase: str) -> crypto.VaultKeys:
        kdf = creds["kdf"]
        return crypto.derive_keys(passphrase, base64.b64decode(kdf["salt"]), kdf)

    @property
    def container(self) -> BlobContainer:
        """The vault's container through the create-only SAS."""
        return SasContainer(self.creds["blobContainerUrl"])

    @staticmethod
    def read_container(url: str) -> BlobContainer:
        """A container through a restore job's read-only SAS."""
        return SasContainer(url)

    def signed_message(self, body: dict[str, Any]) -> str:
        """A message of this vault, signed (formats.signed_message); `body` gets an id if it has none."""
        body.setdefault("id", uuid.uuid4().hex)
        return formats.signed_message(
            {"v": formats.SCHEMA_VERSION, "tenantId": self.tenant_id, "vaultId": self.vault_id, **body},
            self._signing_key)

    def send(self, queue: str, body: dict[str, Any]) -> str:
        text = self.signed_message(body)
        if queue not in self._queues:
            self._queues[queue] = SasQueueSender(self.creds["queueUrls"][queue])
        # The Functions host reads base64 (host.json messageEncoding).
        self._queues[queue].send(base64.b64encode(text.encode()).decode())
        return body["id"]

    @property
    def _api(self) -> Endpoint:
        if self._api_endpoint is None:
            self._api_endpoint = Endpoint(self.creds["apiUrl"], read_timeout=API_TIMEOUT_S)
        return self._api_endpoint

    def api(self, method: str, subpath: str, body: dict | None = None,
            params: dict[str, str] | None = None) -> dict[str, Any]:
        path = f"{self._api.path}/api/tenants/{self.tenant_id}/vaults/{self.vault_id}/{subpath}"
        data = json.dumps(body).encode() if body is not None else b""
        headers = formats.sign_request(self._signing_key, method, path, data, self.clock())
        headers["content-type"] = "application/json"
        try:
            resp = self._api.request(f"{method} {subpath}", method, path, params, headers, data,
                                     retry_status=False)
        except TransientError as e:
            raise ApiError(f"the Skyvault service at {self.creds['apiUrl']} did not answer: {e}") from None
        try:
            answer = json.loads(resp.body)
        except ValueError:
            answer = {"error": resp.body[:200].decode(errors="replace")}
        if resp.status != 200:
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ApiError(f"{method} {subpath}: {resp.status} {error}")
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
