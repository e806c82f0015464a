"""Local emulators: Azurite (blobs and queues) and the Cosmos DB SQL API server.

Owns starting them on free ports, reading the ports they chose from their
logs, and stopping them. Each region is its own Azurite process, so that a
test can stop the primary region and keep the paired one (Azurite holds all
its accounts in one process). Both are npm packages pinned in package.json;
they are started with `node` directly so that the pid we hold is the server's.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Azurite's published development key: not a secret.
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_ACCOUNT = "devstoreaccount1"
# The Cosmos DB emulator's published key; cosmosdb-server accepts any key.
COSMOS_DEV_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


class EmulatorError(RuntimeError):
    """An emulator could not be found, started or reached."""


def node_modules() -> Path:
    path = Path(os.environ.get("SKYVAULT_NODE_MODULES", REPO_ROOT / "node_modules"))
    if not (path / "azurite").is_dir():
        raise EmulatorError(f"Azurite is not installed under {path}: run `npm ci` in {REPO_ROOT}")
    return path


@dataclass
class AzuriteInstance:
    """One region's storage account served by its own Azurite process."""

    region: str
    account: str
    pid: int
    blob_port: int
    queue_port: int
    scheme: str = "http"

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.blob_port}/{self.account}"

    @property
    def queue_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.queue_port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};"
        )


@dataclass
class CosmosInstance:
    pid: int
    port: int
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    key: str = COSMOS_DEV_KEY


def _wait_for(log_path: Path, proc: subprocess.Popen, patterns: list[str], what: str) -> list[re.Match]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        found = [re.search(p, text) for p in patterns]
        if all(found):
            return found  # type: ignore[return-value]
        if proc.poll() is not None:
            raise EmulatorError(f"{what} exited with code {proc.returncode}; its log {log_path}:\n{text[-2000:]}")
        time.sleep(0.1)
    stop_pid(proc.pid)
    raise EmulatorError(f"{what} did not report its ports within {START_TIMEOUT_S}s; see {log_path}")


def start_azurite(region: str, account: str, workdir: Path, blob_port: int = 0,
                  queue_port: int = 0, in_memory: bool = False,
                  oauth_tls: tuple[Path, Path] | None = None) -> AzuriteInstance:
    """Start one Azurite process for `region` serving `account` (plus the default account).
    Ports 0 pick free ones; given ports (and the same workdir) restart a stopped region as it was.
    `in_memory` keeps blobs and queues in the process instead of on disk, where Azurite
    writes each blob, syncs it and reads it back to hash it: a stopped region loses its data.
    `oauth_tls` (a PEM certificate and its key) serves HTTPS and accepts Entra ID bearer tokens
    (`--oauth basic`: their lifetime, issuer and audience are checked, not their signature), as
    a keyless deployment reaches its accounts; only then does Azurite hand out user-delegation keys."""
    data = workdir / f"azurite-{region}"
    storage = ["--inMemoryPersistence"] if in_memory else ["--location", str(data)]
    (workdir if in_memory else data).mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"azurite-{region}.log"
    env = dict(os.environ)
    env["AZURITE_ACCOUNTS"] = f"{DEFAULT_ACCOUNT}:{DEV_ACCOUNT_KEY};{account}:{DEV_ACCOUNT_KEY}"
    if oauth_tls:  # a copy from a URL is fetched by Azurite itself, over HTTPS to itself
        env["NODE_EXTRA_CA_CERTS"] = str(oauth_tls[0])
    cmd = [
        "node", str(node_modules() / "azurite" / "dist" / "src" / "azurite.js"),
        "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
        "--tableHost", "127.0.0.1", "--tablePort", "0",
        *storage,
        *(["--oauth", "basic", "--cert", str(oauth_tls[0]), "--key", str(oauth_tls[1])] if oauth_tls else []),
        "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        "--silent",  # no access log: it costs Azurite about a tenth of its CPU under load
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    blob, queue = _wait_for(
        log_path, proc,
        [r"Blob service is successfully listening at https?://[^:]+:(\d+)",
         r"Queue service is successfully listening at https?://[^:]+:(\d+)"],
        f"Azurite ({region})",
    )
    return AzuriteInstance(region=region, account=account, pid=proc.pid, blob_port=int(blob.group(1)),
                           queue_port=int(queue.group(1)), scheme="https" if oauth_tls else "http")


def start_cosmos(workdir: Path, tls: tuple[Path, Path] | None = None) -> CosmosInstance:
    """Start the in-memory Cosmos DB SQL API server, keeping connections alive (cosmosdb_server.js):
    without TLS (its bundled certificate expired) unless `tls` (a PEM certificate and its key) is
    given. It takes any key and any bearer token."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "cosmos.log"
    cmd = ["node", str(Path(__file__).with_name("cosmosdb_server.js")),
           str(node_modules() / "@vercel" / "cosmosdb-server"), "127.0.0.1", "0", *map(str, tls or ())]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (port,) = _wait_for(log_path, proc, [r"connections at [^\s]+:(\d+)"], "Cosmos DB emulator")
    return CosmosInstance(pid=proc.pid, port=int(port.group(1)), scheme="https" if tls else "http")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop a server and its process group: SIGTERM, then SIGKILL after `timeout`."""
    if not pid_alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
