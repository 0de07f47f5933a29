#!/usr/bin/env python3
"""The help desk's demo upstream: a CRM, a ticket system and a knowledge base on loopback.

    DEMO_CRM_TOKEN=... DEMO_TICKETS_KEY=... python examples/mcp-gateway/upstream.py [--port 9181]

The three REST APIs the tools of `tools.mcp` call, in one starlette app served
by uvicorn on 127.0.0.1.  Like real upstreams they want a credential: the CRM
`Authorization: Bearer $DEMO_CRM_TOKEN`, the ticket system `x-api-key:
$DEMO_TICKETS_KEY` (the knowledge base is open).  The gateway has those
secrets in its environment; an agent never does.  Each record holds more than
the tools' `map` passes on (an email, internal notes), so a result that lacks
them shows the mapping at work.

`GET /_audit` counts the requests it served and how many carried a credential
other than the one it expects (an agent's token, say): walkthrough.py reads it
to show that none did.  The answers are fixed data and ticket numbers count up
from T-1001, so every run prints the same.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 9181

CUSTOMERS: dict[str, dict[str, Any]] = {
    "c-1042": {
        "id": "c-1042",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "segment": "gold",
        "notes": "prefers email; do not call before 10:00",
        "tickets": [{"id": "T-0977", "state": "open"}, {"id": "T-0991", "state": "open"}],
    },
    "c-2077": {
        "id": "c-2077",
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": "grace@example.com",
        "notes": "",
        "tickets": [],
    },
    "vip-7": {
        "id": "vip-7",
        "first_name": "Vera",
        "last_name": "Important",
        "email": "vera@example.com",
        "segment": "platinum",
        "notes": "board member",
        "tickets": [],
    },
}

ARTICLES: list[dict[str, Any]] = [
    {"id": "kb-1", "title": "How refunds work", "words": {"refund", "refunds", "money"}},
    {"id": "kb-2", "title": "Refund timelines by card network", "words": {"refund", "card"}},
    {"id": "kb-3", "title": "Resetting a password", "words": {"password", "login"}},
]


@dataclass
class Audit:
    """What the upstream saw: requests served, and credentials it did not issue."""

    requests: int = 0
    foreign_credentials: int = 0
    tickets: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def app(crm_token: str, tickets_key: str) -> Any:
    """The starlette app (imports inside: `--help` works without the server's packages)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    audit = Audit()

    def seen(request: Request, expected: str | None) -> None:
        audit.requests += 1
        given = request.headers.get("authorization")
        if given is not None and (expected is None or not _same(given, expected)):
            audit.foreign_credentials += 1

    async def customer(request: Request) -> JSONResponse:
        expected = f"Bearer {crm_token}"
        seen(request, expected)
        if not _same(request.headers.get("authorization"), expected):
            return JSONResponse({"error": "unauthorized"}, 401)
        record = CUSTOMERS.get(request.path_params["cid"])
        if record is None:
            return JSONResponse({"error": "no such customer"}, 404)
        return JSONResponse(record)

    async def create_ticket(request: Request) -> JSONResponse:
        seen(request, None)
        if not _same(request.headers.get("x-api-key"), tickets_key):
            return JSONResponse({"error": "unauthorized"}, 401)
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("customer_id"), str):
            return JSONResponse({"error": "customer_id is required"}, 400)
        ticket = {
            "id": f"T-{next(audit.tickets)}",
            "state": "open",
            "customer_id": body["customer_id"],
            "subject": body.get("subject", ""),
            "assignee": "queue:tier-1",
            "internal": {"sla_hours": 24},
        }
        if isinstance(body.get("priority"), str):
            ticket["priority"] = body["priority"]
        return JSONResponse(ticket, 201)

    async def search(request: Request) -> JSONResponse:
        seen(request, None)
        query = request.query_params.get("query", "")
        words = set(query.lower().split())
        hits = [{"id": a["id"], "title": a["title"]} for a in ARTICLES if words & a["words"]]
        return JSONResponse({"query": query, "articles": hits})

    async def report(_: Request) -> JSONResponse:
        return JSONResponse(
            {"requests": audit.requests, "foreign_credentials": audit.foreign_credentials}
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/crm/customers/{cid}", customer),
            Route("/tickets", create_ticket, methods=["POST"]),
            Route("/kb/search", search),
            Route("/_audit", report),
            Route("/health", health),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="loopback port")
    args = parser.parse_args(argv)
    crm_token = os.environ.get("DEMO_CRM_TOKEN", "")
    tickets_key = os.environ.get("DEMO_TICKETS_KEY", "")
    if not crm_token or not tickets_key:
        print("upstream.py: set DEMO_CRM_TOKEN and DEMO_TICKETS_KEY", file=sys.stderr)
        return 2
    import uvicorn

    print(f"upstream.py: listening on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        app(crm_token, tickets_key),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
