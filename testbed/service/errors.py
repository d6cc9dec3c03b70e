"""Errors of the mock Security Service: every one is a JSON array of {ErrorCode, Title, Detail}."""

from __future__ import annotations

from starlette.responses import JSONResponse

from testbed.contract.errors import error_body


class ApiError(Exception):
    """An error answered to the client as ``[{"ErrorCode", "Title", "Detail"}]``."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail or title
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.title, self.detail, self.headers)


def error_response(
    status: int, code: str, title: str, detail: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, title, detail), status_code=status, headers=headers)


def bad_request(detail: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, "The request is not valid.", detail)


def not_found(what: str) -> ApiError:
    return ApiError(404, "NotFound", "The resource was not found.", what)


def unauthorized(detail: str = "A valid credential is required.") -> ApiError:
    return ApiError(
        401, "Unauthorized", "Authentication failed.", detail, {"WWW-Authenticate": "Bearer"}
    )


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", "The caller may not do this.", detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", "The resource already exists.", detail)
