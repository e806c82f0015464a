"""HTTP triggers for agents: dedup look-up, recovery points and their commit, restore jobs, vault
status, an item's schedule, key check, credential renewal (shared.service.agent_api), the check
of chunks against storage and agents' damage reports (shared.service.check, shared.service.damage).

Every route is under tenants/{tenant}/vaults/{vault}/ and every request is signed by a machine
(shared.identity.sign_request): a registered one of the vault's, or, for `POST machines`, the
new one an enrolment ticket registers. This module alone maps the service's errors
to HTTP statuses; `answer` is also what the agent's in-process client calls in tests, so both
go through the same routing, authentication and mapping."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

import azure.functions as func

from shared.bootstrap import services
from shared.domain import Machine, Vault
from shared.errors import Forbidden, Invalid, NotFound, Refused, ServiceError, Unauthenticated
from shared.messages import (ChunkCheckRequest, CommitRequest, DamageRequest, EnrolRequest, ErrorAnswer, KeyCheckRequest,
                             LookupRequest, RestoreRequest, RunRequest, parse_request_body)
from shared.service import agent_api, bills, check, damage, machines, restore, runs, vaults
from shared.service.context import Services

bp = func.Blueprint()
VAULT_ROUTE = "tenants/{tenant}/vaults/{vault}"
_VAULT_PATH = re.compile(r".*/tenants/(?P<tenant>[^/]+)/vaults/(?P<vault>[^/]+)/(?P<subpath>.+)\Z")

# Most specific first: a status is chosen by the first class the error is an instance of.
STATUSES: tuple[tuple[type[ServiceError], int], ...] = (
    (Invalid, 400), (Unauthenticated, 401), (Forbidden, 403), (NotFound, 404), (Refused, 409), (ServiceError, 503))


def status_of(error: ServiceError) -> int:
    """The HTTP status of a refusal: 4xx for a permanent one, 503 for a retryable one."""
    if error.retryable:
        return 503
    return next(status for kind, status in STATUSES if isinstance(error, kind))


@dataclass(frozen=True)
class Call:
    """One signed API request, as the trigger received it."""

    method: str
    path: str  # the URL's path, which the signature covers
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        return parse_request_body(self.body)


Action = Callable[[Services, Vault, Machine, Call, re.Match], Any]
_ACTIONS: list[tuple[str, re.Pattern, Action]] = [
    ("POST", re.compile(r"chunks/lookup\Z"),
     lambda svc, vault, machine, call, _: agent_api.lookup_chunks(svc, vault, LookupRequest.from_doc(call.json())).to_doc()),
    ("GET", re.compile(r"points\Z"),
     lambda svc, vault, machine, call, _: {"points": [p.to_doc() for p in agent_api.list_points(
         svc, vault, call.params.get("item"))]}),
    ("POST", re.compile(r"commits\Z"),
     lambda svc, vault, machine, call, _: agent_api.commit_request(
         svc, vault, machine, CommitRequest.from_doc(call.json())).to_doc()),
    ("GET", re.compile(r"jobs/(?P<job>[^/]+)\Z"),
     lambda svc, vault, machine, call, m: agent_api.job_status(svc, vault, machine, m["job"]).to_doc()),
    ("POST", re.compile(r"keycheck\Z"),
     lambda svc, vault, machine, call, _: vaults.record_key_check(svc, vault, KeyCheckRequest.from_doc(call.json())).to_doc()),
    ("POST", re.compile(r"credentials\Z"),
     lambda svc, vault, machine, call, _: agent_api.renew_credentials(svc, vault, machine).to_doc()),
    ("POST", re.compile(r"restores\Z"),
     lambda svc, vault, machine, call, _: agent_api.job_view(restore.create_restore_job(
         svc, vault, RestoreRequest.from_doc(call.json()), machine.id)).to_doc()),
    ("GET", re.compile(r"status\Z"),
     lambda svc, vault, machine, call, _: agent_api.vault_status(svc, vault).to_doc()),
    ("GET", re.compile(r"bill\Z"),
     lambda svc, vault, machine, call, _: bills.statement(svc, vault.tenant_id, bills.parse_month(call.params["month"])
                                                 if "month" in call.params else None, [vault]).to_doc()),
    ("GET", re.compile(r"items/(?P<item>[^/]+)/schedule\Z"),
     lambda svc, vault, machine, call, m: agent_api.item_schedule(svc, vault, m["item"]).to_doc()),
    ("POST", re.compile(r"runs\Z"),
     lambda svc, vault, machine, call, _: runs.start_run(svc, vault, RunRequest.from_doc(call.json())).to_doc()),
    ("POST", re.compile(r"runs/(?P<run>[^/]+)\Z"),
     lambda svc, vault, machine, call, m: runs.heartbeat(svc, vault, m["run"]).to_doc()),
    ("GET", re.compile(r"chunks/epoch\Z"),
     lambda svc, vault, machine, call, _: agent_api.chunk_epoch(vault).to_doc()),
    ("POST", re.compile(r"chunks/check\Z"),
     lambda svc, vault, machine, call, _: check.check_chunks(svc, vault, ChunkCheckRequest.from_doc(call.json())).to_doc()),
    ("POST", re.compile(r"messages/(?P<queue>[^/]+)\Z"),
     lambda svc, vault, machine, call, m: agent_api.post_message(svc, vault, machine, m["queue"], call.body).to_doc()),
    ("POST", re.compile(r"chunks/damage\Z"),
     lambda svc, vault, machine, call, _: damage.report_damage(svc, vault, DamageRequest.from_doc(call.json())).to_doc()),
]


def answer(svc: Services, call: Call) -> tuple[int, Any]:
    """The status and JSON answer of one request: authenticated, routed, errors mapped."""
    try:
        where = _VAULT_PATH.match(call.path)
        if where is None:
            raise NotFound(f"no route {call.method} {call.path}")
        if (call.method, where["subpath"]) == ("POST", "machines"):  # a new machine: the ticket vouches for it
            return 200, machines.enrol(svc, where["tenant"], where["vault"], call.method, call.path, call.params,
                                       call.body, call.headers, EnrolRequest.from_doc(call.json())).to_doc()
        vault, machine = machines.authenticate(svc, where["tenant"], where["vault"], call.method, call.path,
                                               call.params, call.body, call.headers)
        for method, pattern, action in _ACTIONS:
            match = pattern.match(where["subpath"])
            if method == call.method and match:
                return 200, action(svc, vault, machine, call, match)
        raise NotFound(f"no route {call.method} {where['subpath']}")
    except ServiceError as e:
        logging.warning("%s %s: %s", call.method, call.path, e)
        return status_of(e), ErrorAnswer(str(e)).to_doc()


def _serve(req: func.HttpRequest) -> func.HttpResponse:
    status, body = answer(services(), Call(req.method, urlparse(req.url).path, dict(req.params),
                                           dict(req.headers), req.get_body()))
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.route(route=VAULT_ROUTE + "/machines", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def enrol_machine(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/chunks/lookup", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def lookup_chunks(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/points", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_points(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/commits", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def commit_point(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/jobs/{job}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def job_status(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/keycheck", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def key_check(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/credentials", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def renew_credentials(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/restores", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def create_restore(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/status", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def vault_status(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/bill", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def vault_bill(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/items/{item}/schedule", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_schedule(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/runs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def start_run(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/runs/{run}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def run_heartbeat(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/chunks/epoch", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def chunk_epoch(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/chunks/check", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def check_chunks(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/chunks/damage", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def report_damage(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)


@bp.route(route=VAULT_ROUTE + "/messages/{queue}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def post_message(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req)
