"""HTTP triggers for agents: dedup look-up, recovery points and their commit, restore jobs, vault
status, key check, credential renewal.

Every route is under tenants/{tenant}/vaults/{vault}/ and every request is
signed with the vault's signing key (shared.formats.sign_request)."""
import json
import logging
from typing import Any, Callable
from urllib.parse import urlparse

import azure.functions as func

from shared import handlers, replication
from shared.bootstrap import services
from shared.domain import Vault

bp = func.Blueprint()
VAULT_ROUTE = "tenants/{tenant}/vaults/{vault}"


def _json(status: int, body: Any) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _serve(req: func.HttpRequest, action: Callable[[handlers.Services, Vault, Any], Any]) -> func.HttpResponse:
    svc = services()
    try:
        vault = handlers.authenticate(svc, req.route_params["tenant"], req.route_params["vault"], req.method,
                                      urlparse(req.url).path, req.get_body(), dict(req.headers))
        payload = None
        if req.method == "POST":
            try:
                payload = json.loads(req.get_body() or b"{}")
            except json.JSONDecodeError as e:
                raise handlers.ServiceError(f"request body is not JSON: {e}") from None
            if not isinstance(payload, dict):
                raise handlers.ServiceError("request body is not a JSON object")
        return _json(200, action(svc, vault, payload))
    except handlers.ServiceError as e:
        logging.warning("%s %s: %s", req.method, req.url, e)
        return _json(e.status, {"error": str(e)})


@bp.route(route=VAULT_ROUTE + "/chunks/lookup", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def lookup_chunks(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, handlers.lookup_chunks)


@bp.route(route=VAULT_ROUTE + "/points", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_points(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, lambda svc, vault, _: handlers.list_points(svc, vault, req.params.get("item")))


@bp.route(route=VAULT_ROUTE + "/commits", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def commit_point(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, handlers.commit_request)


@bp.route(route=VAULT_ROUTE + "/jobs/{job}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def job_status(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, lambda svc, vault, _: handlers.job_status(svc, vault, req.route_params["job"]))


@bp.route(route=VAULT_ROUTE + "/keycheck", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def key_check(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, handlers.record_key_check)


@bp.route(route=VAULT_ROUTE + "/credentials", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def renew_credentials(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, lambda svc, vault, _: handlers.renew_credentials(svc, vault))


@bp.route(route=VAULT_ROUTE + "/restores", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def create_restore(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, lambda svc, vault, body: handlers.create_restore_job(svc, vault, body).to_doc())


@bp.route(route=VAULT_ROUTE + "/status", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def vault_status(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, lambda svc, vault, _: replication.vault_status(svc, vault))
