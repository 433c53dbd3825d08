"""Tokens never reach a log: every line the gateway writes passes through `redact` first.

uvicorn logs each WebSocket handshake with its path and query (`/v1/ws?token=...`), and any log
line could quote a header or a message; a token there would be a credential in every log copy.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

REDACTED: Final = "[redacted]"
#: `token=<value>` (and `access_token=`, ...) in a query string or a form, up to the next separator.
_QUERY_TOKEN: Final = re.compile(r"(?i)(\b[a-z_]*token=)[^&\s\"'<>]+")
#: An Authorization value: `authorization: Bearer x`, `'authorization': 'x'`, `Authorization=x`.
_AUTHORIZATION: Final = re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=,]\s*[(\[]?\s*(?:b?[\"'])?"
                                   r"(?:(?:bearer|basic|digest)\s+)?)[^\"'\s,)\]}]+")
#: `Bearer <token>` wherever it appears.
_BEARER: Final = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+")
#: Anything shaped like a JWT (three base64url segments, the first a JSON header `{"`).
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    """`text` with every token value replaced by `[redacted]`."""
    text = _QUERY_TOKEN.sub(rf"\1{REDACTED}", text)
    text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments and traceback alike) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, tokens removed."""
        return redact(super().format(record))


def configure_logging() -> None:
    """Every gateway process logs to stdout through the redacting formatter (uvicorn logs each WebSocket
    handshake's path, `?token=` included)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
