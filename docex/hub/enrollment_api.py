"""The enrollment endpoints of the hub's API: a terminal with no certificate yet sends its
certificate requests and polls for the result. No login (the terminal has none yet): the
fingerprint the information centre compares is the authentication; the request id, random
and known only to the terminal, keeps other terminals from reading another's result."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from docex.hub import enrollment
from docex.hub.context import HubContext
from docex.pki.errors import PkiError

log = logging.getLogger(__name__)
POLL_LIMIT = (120, 60.0)  # per client address: polls a minute


def router(ctx: HubContext) -> APIRouter:
    api = APIRouter()
    submits = enrollment.RateLimit(ctx.config.api.enroll_requests_per_10min, 600.0)
    polls = enrollment.RateLimit(*POLL_LIMIT)

    def _refuse(exc: PkiError, status: int = 400) -> HTTPException:
        return HTTPException(status_code=status, detail={"code": exc.code, "message": exc.message})

    @api.post("/api/enroll", status_code=202, include_in_schema=False)
    async def submit(request: Request) -> dict[str, Any]:
        peer = request.client.host if request.client else ""
        if not submits.allow(peer):
            raise HTTPException(status_code=429, detail={"code": "rate_limited", "message": "too many requests"})
        body = await request.body()
        if len(body) > enrollment.MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail={"code": "too_large", "message": "request too large"})
        try:
            data = json.loads(body)
            made = enrollment.submit(ctx.config, data, peer=peer)
        except ValueError:
            raise HTTPException(status_code=400, detail={"code": "bad_request", "message": "not JSON"}) from None
        except PkiError as exc:
            log.warning("certificate request from %s refused: [%s] %s", peer, exc.code, exc.message)
            raise _refuse(exc, 429 if exc.code == "rate_limited" else 400) from None
        log.info("certificate request %s for %s from %s, fingerprint %s", made.id[:8], made.address, peer,
                 made.fingerprint)
        return {"id": made.id, "address": made.address, "fingerprint": made.fingerprint, "state": made.state}

    @api.get("/api/enroll/{request_id}", include_in_schema=False)
    def poll(request_id: str, request: Request) -> dict[str, Any]:
        peer = request.client.host if request.client else ""
        if not polls.allow(peer):
            raise HTTPException(status_code=429, detail={"code": "rate_limited", "message": "too many requests"})
        try:
            return enrollment.status(ctx.config, request_id)
        except PkiError as exc:
            raise _refuse(exc, 404) from None

    return api
