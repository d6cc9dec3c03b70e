"""The mock Security Service as a Starlette application: ``create_app``.

One module per API, each a list of routes to Starlette ``HTTPEndpoint`` classes
(methods found on the class, HEAD answered by GET, 405 with ``Allow``):

- public API ``/v2/...`` (:mod:`.api_public`, bearer token of a tenant role),
- the device API (:mod:`.api_device`; its paths are ``testbed.contract.device_api``'s), the device credential,
- support API ``/support/v1/...`` (:mod:`.api_support`, bearer token of role Support),
- testbed control ``/testbed/v1/...`` (:mod:`.api_control`, only with control enabled),
- ``GET /healthz``.

Errors are the app's exception handlers: an ``ApiError`` answers its JSON error
body, Starlette's ``HTTPException`` (404, 405) the same body shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.service import api_control, api_device, api_public, api_support
from testbed.service.errors import ApiError, error_response
from testbed.service.faults import FaultMiddleware
from testbed.service.settings import ServiceConfig
from testbed.service.state import ServiceState, state_of
from testbed.service.validation import ClientGone

HTTP_TITLES = {404: "NotFound", 405: "MethodNotAllowed"}


class PublicPathCase:
    """The public API's paths, ids and names are case-insensitive (``/deviceGroups`` is the
    reference's casing; GUIDs come in any case): its paths are matched in lower case."""

    PREFIX = "/v2/"

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"][:4].lower() == self.PREFIX:
            scope = {**scope, "path": scope["path"].lower()}
        await self.app(scope, receive, send)


class Health(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "serverTime": state_of(request).clock.now_int()})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left mid-body: already logged in one line; this answer reaches no one."""
    return error_response(400, "ClientGone", "The client went away before its request was complete.")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(
        exc.status_code,
        HTTP_TITLES.get(exc.status_code, "HttpError"),
        str(exc.detail),
        f"{request.method} {request.url.path}",
        dict(exc.headers or {}),
    )


def _lifespan(state: ServiceState):
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.ingest.start()
        state.ingest.request_sweep()
        state.sweeper = asyncio.create_task(_sweep_loop(state))
        try:
            yield
        finally:
            state.sweeper.cancel()
            state.ingest.stop()
            state.store.close()

    return lifespan


async def _sweep_loop(state: ServiceState) -> None:
    while True:
        await asyncio.sleep(state.config.sweep_interval)
        state.ingest.request_sweep()


def create_app(config: ServiceConfig) -> Starlette:
    state = ServiceState.open(config)
    # The device API first: Starlette tries routes in order (a regex match each), and the
    # device routes carry nearly all the traffic of a fleet.
    routes = [*api_device.ROUTES, Route("/healthz", Health), *api_public.ROUTES, *api_support.ROUTES]
    if config.enable_control:
        routes += api_control.ROUTES
    app = Starlette(
        routes=routes,
        middleware=[Middleware(PublicPathCase), Middleware(FaultMiddleware, faults=state.faults)],
        lifespan=_lifespan(state),
        exception_handlers={ApiError: api_error, HTTPException: http_error, ClientGone: client_gone},
    )
    app.state.service = state
    return app
