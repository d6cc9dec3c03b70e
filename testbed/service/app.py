"""The mock Security Service as a Starlette application: ``create_app``.

One module per API, each a list of routes to Starlette ``HTTPEndpoint`` classes
(methods found on the class, HEAD answered by GET, 405 with ``Allow``):

- public API ``/v2/...`` (:mod:`.api_public`, bearer token of a tenant role),
- device API ``/device/v1/...`` (:mod:`.api_device`, the device credential),
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

HTTP_TITLES = {404: "NotFound", 405: "MethodNotAllowed"}


class Health(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "serverTime": state_of(request).clock.now_int()})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


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
        middleware=[Middleware(FaultMiddleware, faults=state.faults)],
        lifespan=_lifespan(state),
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
    app.state.service = state
    return app
