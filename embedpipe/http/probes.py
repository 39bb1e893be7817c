"""Liveness (`GET /healthz`) and readiness (`GET /readyz`) of our HTTP services.

Readiness runs named checks of the app's dependencies, each under a time limit, and answers
`{"status": "ready" | "not ready", "checks": {name: "ok" | why not}}`: 200 when every check
passes, 503 otherwise (the `Readiness` schema of embedpipe/http/openapi.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

#: A dependency check: passes when it returns, fails when it raises.
Check = Callable[[], Awaitable[object]]
#: The probes' paths: public, no API key.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
CHECK_TIMEOUT_S = 1.0


class NotReadyError(Exception):
    """A dependency answered but is not ready; the message says why (e.g. "not serving")."""


async def _run(check: Check, timeout_s: float) -> str:
    """The check's result: "ok", a `NotReadyError`'s message or "unreachable: <ExcType>"."""
    try:
        async with asyncio.timeout(timeout_s):
            await check()
    except NotReadyError as exc:
        return str(exc)
    except Exception as exc:  # any failure means "not ready", whatever it was
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def readiness_response(checks: Mapping[str, Check], timeout_s: float) -> web.Response:
    """Run `checks` one after the other, each within `timeout_s` seconds; 200 if all pass."""
    results = {name: await _run(check, timeout_s) for name, check in checks.items()}
    ready = all(result == "ok" for result in results.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


def add_probe_routes(
    app: web.Application, checks: Callable[[web.Application], Mapping[str, Check]]
) -> None:
    """`GET /healthz` (the process serves HTTP) and `GET /readyz` (every check of
    `checks(app)` passes) on `app`."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        return await readiness_response(checks(request.app), CHECK_TIMEOUT_S)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
