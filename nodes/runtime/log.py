"""Structured one-line logs (key=value) carrying the node name and the current trace id."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from nodes.runtime.tracing import current_trace_id


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=... node=... trace_id=... msg="..." k=v` on one line."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "node": self.node,
            "msg": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            fields["trace_id"] = trace_id
        fields.update(getattr(record, "kv", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info).replace("\n", " | ")
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def setup_logging(node: str) -> logging.Logger:
    """Route the root logger to stderr in key=value form; level from `QT_LOG_LEVEL`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("QT_LOG_LEVEL", "INFO").upper())
    return logging.getLogger(node)


def kv(**fields: Any) -> dict[str, Any]:
    """Extra fields for a log call: `log.info("relayed", extra=kv(n=5))`."""
    return {"kv": fields}
