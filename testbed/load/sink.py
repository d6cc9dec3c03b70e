"""The benchmark's baseline: a trivial sink that drains an upload's body and answers 201.

Same paths as the device API (sync, intent, upload) so the same Locust users
drive it; no auth, no parsing, no storage. ``python -m testbed.load.sink
--port 0 --ready-file F`` runs it on 127.0.0.1 with uvicorn, as the service runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import uuid
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.contract import device_api as api
from testbed.service.uvicorn_choice import UVICORN_HTTP, UVICORN_LOOP

#: the region the sink claims to have stored in (any of the service's regions would do)
SINK_REGION = "EastUS"


async def upload(request: Request) -> Response:
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return JSONResponse({api.UploadResponse.ID: uuid.uuid4().hex, api.UploadResponse.REGION: SINK_REGION, "bytes": n},
                        status_code=201)


async def intent(request: Request) -> Response:
    await request.body()
    return JSONResponse({api.IntentResponse.ACTION: api.IntentAction.UPLOAD})


async def sync(request: Request) -> Response:
    await request.body()
    return JSONResponse({api.SyncResponse.OPT_IN: True, api.SyncResponse.THROTTLED_SIGNATURES: [],
                         api.SyncResponse.VALIDITY_SECONDS: api.VALIDITY_SECONDS})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(routes=[
        Route(api.UPLOAD_PATH, upload, methods=["POST"]),
        Route(api.INTENT_PATH, intent, methods=["POST"]),
        Route(api.SYNC_PATH, sync, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.load.sink", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    # proto=IPPROTO_TCP, as the service does (testbed.service.server): asyncio sets TCP_NODELAY on
    # accepted sockets only when the listening socket says TCP. Without it every response (headers
    # and body are two writes) waits ~40 ms for the client's delayed ACK (Nagle), which capped the
    # sink at users / 44 ms (~700 uploads/s for 32 users) while both sides sat mostly idle.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "port": port, "pid": os.getpid()}))
            tmp.replace(args.ready_file)

    # the same event loop, HTTP parser and proxy-header setting as the service (testbed.service.server)
    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="off",
                            timeout_keep_alive=5, backlog=2048, loop=UVICORN_LOOP, http=UVICORN_HTTP,
                            proxy_headers=False)
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
