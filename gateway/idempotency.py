"""Idempotency-Key records in the `idempotency` bucket: the first request wins, the others get its answer.

A record is created (`create()`: first wins) as `pending` with the request's fingerprint, and turned
`done` with the status and body once answered. A duplicate with the same fingerprint waits for `done`
and replays it byte for byte (`Idempotent-Replayed: true`); another fingerprint is
`idempotency_conflict`; still pending past the wait is `idempotency_in_flight`. Server errors (5xx)
are not recorded: the record is deleted so a retry runs again (the op_id / saga id derived from the
key keeps that safe downstream). A pending record whose gateway died is taken over once it is stale.
The bucket's TTL (24 h) expires records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from starlette.responses import Response

from contracts.errors import ErrorCode, QtError
from contracts.gateway import IDEMPOTENT_REPLAYED_HEADER, GatewayCode
from gateway.problems import PROBLEM_TYPE, Problem
from gateway.tokens import Principal

JSON_TYPE = "application/json"


@dataclass
class Outcome:
    """A response as recorded: status, exact body bytes, media type and the headers worth replaying."""

    status: int
    body: bytes
    media_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, *, replayed: bool = False) -> Response:
        """The HTTP response; a replay says so in `Idempotent-Replayed`."""
        headers = dict(self.headers)
        if replayed:
            headers[IDEMPOTENT_REPLAYED_HEADER] = "true"
        return Response(self.body, self.status, headers=headers, media_type=self.media_type)

    @classmethod
    def of_problem(cls, problem: Problem, instance: str) -> Outcome:
        """A refusal as an outcome (headers such as `Retry-After` are not replayed)."""
        return cls(problem.status, problem.render(instance), PROBLEM_TYPE)


def scoped(principal: Principal, account: str, key: str) -> str:
    """The key in its scope: who sent it (subject and role) and the account it acts on, hashed.

    The record and the op_id / saga id derived from a key both use this, so they always agree: the same
    principal's retry is the same request, another principal's reuse of the key (ops and the customer on
    one account, say) is a different one.
    """
    scope = "\n".join((str(principal.role), principal.account, account, key))
    return hashlib.sha256(scope.encode()).hexdigest()


def record_key(principal: Principal, account: str, key: str) -> str:
    """The record's name in the bucket: the acted-on account, then the scoped key."""
    return f"{account}.{scoped(principal, account, key)[:40]}"


class IdempotencyRecords:
    """Runs a mutating request at most once per (principal, acted-on account, Idempotency-Key) within the TTL."""

    def __init__(self, bucket: Callable[[], KeyValue], *, wait_s: float, stale_s: float) -> None:
        self.bucket = bucket
        self.wait_s = wait_s
        self.stale_s = stale_s

    async def run(self, principal: Principal, account: str, key: str, fingerprint: str, instance: str,
                  execute: Callable[[], Awaitable[Outcome]]) -> Response:
        """Execute once and record the answer, or answer from the record."""
        try:
            return await self._run(record_key(principal, account, key), fingerprint, instance, execute)
        except NatsError as exc:  # the bucket (or JetStream) is unreachable: the caller may retry
            raise Problem(ErrorCode.UNAVAILABLE, f"NATS unavailable: {exc!r}"[:200]) from None

    async def _run(self, name: str, fingerprint: str, instance: str,
                   execute: Callable[[], Awaitable[Outcome]]) -> Response:
        kv = self.bucket()
        deadline = time.monotonic() + self.wait_s
        pause = 0.01
        while True:
            pending = _encode({"state": "pending", "fingerprint": fingerprint, "started_ms": _now_ms()})
            try:
                revision = await kv.create(name, pending)
            except KeyWrongLastSequenceError:
                pass
            else:
                return await self._execute(kv, name, revision, fingerprint, instance, execute)
            try:
                entry = await kv.get(name)
            except KeyNotFoundError:  # the first one failed and let go between our two calls
                continue
            record = json.loads(entry.value or b"{}")
            if record.get("fingerprint") != fingerprint:
                raise Problem(ErrorCode.IDEMPOTENCY_CONFLICT,
                              "this Idempotency-Key was already used for a different request")
            if record.get("state") == "done":
                return Outcome(record["status"], record["body"].encode(), record["media_type"],
                               record.get("headers") or {}).response(replayed=True)
            if _now_ms() - int(record.get("started_ms", 0)) > self.stale_s * 1000:
                with contextlib.suppress(KeyWrongLastSequenceError):  # someone else took it over first
                    revision = await kv.update(name, pending, last=entry.revision)
                    return await self._execute(kv, name, revision, fingerprint, instance, execute)
            if time.monotonic() >= deadline:
                raise Problem(GatewayCode.IDEMPOTENCY_IN_FLIGHT,
                              "the first request with this Idempotency-Key is still in flight; retry later",
                              headers={"Retry-After": "1"})
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _execute(self, kv: KeyValue, name: str, revision: int, fingerprint: str, instance: str,
                       execute: Callable[[], Awaitable[Outcome]]) -> Response:
        try:
            try:
                outcome = await execute()
            except Problem as problem:
                outcome = Outcome.of_problem(problem, instance)
            except QtError as exc:
                outcome = Outcome.of_problem(Problem.of(exc), instance)
        except BaseException:
            await _release(kv, name, revision)
            raise
        if outcome.status >= 500:
            await _release(kv, name, revision)
            return outcome.response()
        done = {"state": "done", "fingerprint": fingerprint, "status": outcome.status,
                "media_type": outcome.media_type, "headers": outcome.headers, "body": outcome.body.decode()}
        with contextlib.suppress(KeyWrongLastSequenceError):  # taken over as stale: the taker records it
            await kv.update(name, _encode(done), last=revision)
        return outcome.response()


async def _release(kv: KeyValue, name: str, revision: int) -> None:
    # Best effort: if this fails the record goes stale and the next retry takes it over.
    with contextlib.suppress(Exception):
        await asyncio.shield(kv.delete(name, last=revision))


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _now_ms() -> int:
    return int(time.time() * 1000)
