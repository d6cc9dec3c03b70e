"""Retries of the public API's transient answers, as the Azure Sphere Gallery's script does.

A 429 (the request was not processed) is retried for every method, after its Retry-After;
a 500, 502, 503 or 504 only for the idempotent methods (GET, HEAD, PUT, PATCH, DELETE).
At most ``retries`` more attempts (3, as the gallery's script), each logged to stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

RETRIES = 3
RETRY_AFTER_CAP = 30.0
BACKOFF = (0.5, 1.0, 2.0)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
TRANSIENT = frozenset({500, 502, 503, 504})


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        seconds = BACKOFF[min(attempt, len(BACKOFF) - 1)]
    return max(0.0, min(seconds, RETRY_AFTER_CAP))


class RetryTransport(httpx.BaseTransport):
    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        retries: int = RETRIES,
        log: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.retries = retries
        self.log = log
        self.sleep = sleep
        #: How many retries this transport made (for summaries and tests).
        self.retried = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            response = self.inner.handle_request(request)
            status = response.status_code
            retryable = status == 429 or (status in TRANSIENT and request.method in IDEMPOTENT)
            if not retryable or attempt >= self.retries:
                return response
            wait = _retry_after(response, attempt)
            response.read()
            response.close()
            attempt += 1
            self.retried += 1
            if self.log:
                self.log(f"{request.method} {request.url.path} answered {status}; "
                         f"retry {attempt} of {self.retries} in {wait:g} s")  # fmt: skip
            self.sleep(wait)

    def close(self) -> None:
        self.inner.close()
