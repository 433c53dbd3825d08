"""Errors as `application/problem+json` (RFC 9457) carrying the contract's error code.

Body: `type`, `title`, `status`, `detail` (the message), `code`, `instance` (the path) and, when the
mesh said more, `context` (the contract error's `detail` object).
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from contracts.errors import HTTP_STATUS, ErrorCode, QtError, validation_error
from contracts.gateway import GATEWAY_HTTP_STATUS, GatewayCode

PROBLEM_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:quanttrade:problem:"


class Problem(Exception):
    """An HTTP error with a contract or gateway code; raised anywhere, rendered as problem+json."""

    def __init__(self, code: ErrorCode | GatewayCode, message: str, context: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.context = context or {}
        self.headers = headers or {}
        self.status = HTTP_STATUS[code] if isinstance(code, ErrorCode) else GATEWAY_HTTP_STATUS[code]

    @classmethod
    def of(cls, exc: QtError) -> Problem:
        """The problem an error from the mesh (or a contract validator) becomes."""
        return cls(exc.code, exc.message, exc.detail)

    @classmethod
    def validation(cls, message: str) -> Problem:
        """A `validation_error` found by the gateway itself (e.g. body and path disagree)."""
        return cls(ErrorCode.VALIDATION, message)

    def body(self, instance: str) -> dict[str, Any]:
        """The problem document for a request to `instance`."""
        out: dict[str, Any] = {
            "type": f"{TYPE_PREFIX}{self.code}", "title": str(self.code).replace("_", " ").capitalize(),
            "status": self.status, "detail": self.message, "code": str(self.code), "instance": instance,
        }
        if self.context:
            out["context"] = self.context
        return out

    def render(self, instance: str) -> bytes:
        """The encoded problem document."""
        return encode_json(self.body(instance))

    def response(self, instance: str) -> Response:
        """A response carrying this problem."""
        return Response(self.render(instance), self.status, headers=self.headers, media_type=PROBLEM_TYPE)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, the one encoding every gateway response and WebSocket frame uses (replays are
    byte-identical: they replay the recorded bytes)."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits or a type orjson does not know: the standard library's way
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def validation_problem(exc: ValidationError | RequestValidationError) -> Problem:
    """A schema failure as the nodes report it: `validation_error`, the first error in the message."""
    return Problem.of(validation_error(exc.errors(include_url=False, include_input=False)
                                       if isinstance(exc, ValidationError) else exc.errors()))


def install(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def on_qt_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, QtError)
        return Problem.of(exc).response(request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError | RequestValidationError)
        return validation_problem(exc).response(request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            from gateway.openapi import documented_path  # the document is built from routes that use this module

            # Starlette's Allow names only the first route of the path; a path can have several (GET and POST).
            documented = documented_path(request.app, request.url.path)
            headers = dict(exc.headers or {})
            if documented is not None:
                headers["Allow"] = ", ".join(documented.methods)
            problem = Problem(GatewayCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on this path",
                              headers=headers)
        elif exc.status_code == 404:
            problem = Problem(ErrorCode.NOT_FOUND, f"no route {request.url.path}")
        else:
            problem = Problem(ErrorCode.BAD_PAYLOAD, str(exc.detail))
        return problem.response(request.url.path)

    async def on_crash(request: Request, exc: Exception) -> Response:
        return Problem(ErrorCode.INTERNAL, "internal error").response(request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(QtError, on_qt_error)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
