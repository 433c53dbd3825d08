"""Idempotency-Key records in the `idempotency` bucket: the first request wins, the others get its answer.

A record is created (`create()`: first wins) as `pending` with the request's fingerprint, and turned
`done` with the status and body once answered. A command the node deduplicates itself by an id
derived from the key (a saga id, an op_id: `deduped`) skips the pending record: it runs, its answer
goes out, and then the answer is created `done` in one write, off the response's path (like
clearing's final saga record: the effect is durable already, the record only replays it). Until that
write lands (retried for a minute while JetStream refuses it or is away), this process answers
duplicates from memory; a duplicate in another gateway meanwhile
(or after this one died before writing) reaches the same saga or op downstream and answers with
that node's reply (clearing and the wallet refuse a different request under the same id themselves;
a request under the key on another route, e.g. an order after a deposit, is not seen as a conflict
there). Within one process, a duplicate of a running request waits for its answer without touching
the bucket. A duplicate with the same fingerprint waits for `done` and replays it byte for byte
(`Idempotent-Replayed: true`); another fingerprint is `idempotency_conflict`; still pending past the
wait is `idempotency_in_flight`. Server errors (5xx) are not recorded: the record is deleted so a
retry runs again (the op_id / saga id derived from the key keeps that safe downstream). A pending
record whose gateway died is taken over once it is stale.
The bucket's TTL (`QT_IDEMPOTENCY_TTL_S`, 24 h by default; the gateway sets it on start) expires records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from starlette.responses import Response

from contracts.errors import ErrorCode, QtError
from contracts.gateway import IDEMPOTENT_REPLAYED_HEADER, GatewayCode
from gateway.problems import PROBLEM_TYPE, Problem, encode_json
from gateway.tokens import Principal
from mesh.backoff import Backoff

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
#: Waits between looks at a record another request holds in flight.
IN_FLIGHT_POLL = Backoff(initial_s=0.01, max_s=0.1)
#: Waits between attempts to store an answer's record, and for how long in all.
RECORD_RETRY = Backoff(initial_s=0.1, max_s=2.0)
RECORD_RETRY_S: Final = 60.0


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

    def __init__(self, bucket: Callable[[], KeyValue], *, wait_s: float, stale_s: float,
                 record_delay_s: float = 0.0) -> None:
        self.bucket = bucket
        self.wait_s = wait_s
        self.stale_s = stale_s
        self.record_delay_s = record_delay_s
        #: Requests running in this process by record name: their fingerprint and, once answered, the
        #: outcome duplicates replay (None: nothing to replay, e.g. a 5xx; a duplicate then runs itself).
        self._running: dict[str, tuple[str, asyncio.Future[Outcome | None]]] = {}
        self._recording: set[asyncio.Task[None]] = set()

    async def run(self, principal: Principal, account: str, key: str, fingerprint: str, instance: str,
                  execute: Callable[[], Awaitable[Outcome]], *, deduped: bool = False) -> Response:
        """Execute once and record the answer, or answer from the record.

        `deduped`: the command carries an id derived from the key that the node itself deduplicates (a saga
        id, an op_id), so running it twice is harmless and only the answer is recorded (one write, after it).
        """
        try:
            return await self._run(record_key(principal, account, key), fingerprint, instance, execute, deduped)
        except NatsError as exc:  # the bucket (or JetStream) is unreachable: the caller may retry
            raise Problem(ErrorCode.UNAVAILABLE, f"NATS unavailable: {exc!r}"[:200]) from None

    async def _run(self, name: str, fingerprint: str, instance: str, execute: Callable[[], Awaitable[Outcome]],
                   deduped: bool) -> Response:
        deadline = time.monotonic() + self.wait_s
        while True:
            running = self._running.get(name)
            if running is None:
                break
            # A duplicate of a request this process is running: wait for its answer, no bucket round trip.
            if running[0] != fingerprint:
                raise _conflict()
            try:
                outcome = await asyncio.wait_for(asyncio.shield(running[1]), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _in_flight() from None
            if outcome is not None:
                return outcome.response(replayed=True)
        kv = self.bucket()
        answered: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._running[name] = (fingerprint, answered)
        shared: Outcome | None = None
        record: bytes | None = None
        try:
            response, shared, record = await self._answer(kv, name, fingerprint, instance, execute, deduped, deadline)
            return response
        finally:
            answered.set_result(shared)
            if record is None:
                del self._running[name]
            else:  # duplicates in this process keep replaying `shared` until the record is stored
                task = asyncio.create_task(self._record(kv, name, record))
                self._recording.add(task)
                task.add_done_callback(self._recording.discard)

    async def _record(self, kv: KeyValue, name: str, record: bytes) -> None:
        """Store an answer already sent, retrying for `RECORD_RETRY_S` while JetStream refuses or is away
        (an election, a restart): until it lands, this process replays duplicates from memory."""
        try:
            if self.record_delay_s:
                await asyncio.sleep(self.record_delay_s)
            deadline = time.monotonic() + RECORD_RETRY_S
            delays = RECORD_RETRY.delays()
            while True:
                try:
                    await kv.create(name, record)
                    return
                except KeyWrongLastSequenceError:  # an attempt whose ack was lost, or another gateway, was first
                    log.info("idempotency record=%s already stored", name)
                    return
                except Exception as exc:
                    if time.monotonic() >= deadline:  # a duplicate now runs the deduplicated command again
                        log.error("idempotency record=%s not stored, giving up: %r", name, exc)
                        return
                    delay = next(delays)
                    log.warning("idempotency record=%s write failed, retry_in_s=%.2f: %r", name, delay, exc)
                    await asyncio.sleep(delay)
        finally:
            del self._running[name]

    async def flush(self) -> None:
        """Wait for the records of answers already sent (on shutdown)."""
        if self._recording:
            await asyncio.wait(set(self._recording), timeout=5)

    async def _answer(self, kv: KeyValue, name: str, fingerprint: str, instance: str,
                      execute: Callable[[], Awaitable[Outcome]], deduped: bool,
                      deadline: float) -> tuple[Response, Outcome | None, bytes | None]:
        """The response, the outcome duplicates may replay (None when there is none to replay), and the
        record to store once the response is on its way (deduplicated commands)."""
        pauses = IN_FLIGHT_POLL.delays()
        while True:
            pending = _encode({"state": "pending", "fingerprint": fingerprint, "started_ms": _now_ms()})
            if deduped:
                try:
                    entry = await kv.get(name)
                except KeyNotFoundError:
                    outcome = await _outcome(execute, instance)
                    if outcome.status >= 500:
                        return outcome.response(), None, None
                    return outcome.response(), outcome, _encode(_done(fingerprint, outcome))
            else:
                try:
                    revision = await kv.create(name, pending)
                except KeyWrongLastSequenceError:
                    pass
                else:
                    return *await self._execute(kv, name, revision, fingerprint, instance, execute), None
                try:
                    entry = await kv.get(name)
                except KeyNotFoundError:  # the first one failed and let go between our two calls
                    continue
            record = json.loads(entry.value or b"{}")
            if record.get("fingerprint") != fingerprint:
                raise _conflict()
            if record.get("state") == "done":
                outcome = Outcome(record["status"], record["body"].encode(), record["media_type"],
                                  record.get("headers") or {})
                return outcome.response(replayed=True), outcome, None
            if _now_ms() - int(record.get("started_ms", 0)) > self.stale_s * 1000:
                with contextlib.suppress(KeyWrongLastSequenceError):  # someone else took it over first
                    revision = await kv.update(name, pending, last=entry.revision)
                    return *await self._execute(kv, name, revision, fingerprint, instance, execute), None
            if time.monotonic() >= deadline:
                raise _in_flight()
            await asyncio.sleep(next(pauses))

    async def _execute(self, kv: KeyValue, name: str, revision: int, fingerprint: str, instance: str,
                       execute: Callable[[], Awaitable[Outcome]]) -> tuple[Response, Outcome | None]:
        try:
            outcome = await _outcome(execute, instance)
        except BaseException:
            await _release(kv, name, revision)
            raise
        if outcome.status >= 500:
            await _release(kv, name, revision)
            return outcome.response(), None
        with contextlib.suppress(KeyWrongLastSequenceError):  # taken over as stale: the taker records it
            await kv.update(name, _encode(_done(fingerprint, outcome)), last=revision)
        return outcome.response(), outcome


async def _outcome(execute: Callable[[], Awaitable[Outcome]], instance: str) -> Outcome:
    """Run the request; a refusal (problem or mesh error) is an outcome like any answer."""
    try:
        return await execute()
    except Problem as problem:
        return Outcome.of_problem(problem, instance)
    except QtError as exc:
        return Outcome.of_problem(Problem.of(exc), instance)


def _done(fingerprint: str, outcome: Outcome) -> dict[str, Any]:
    return {"state": "done", "fingerprint": fingerprint, "status": outcome.status, "media_type": outcome.media_type,
            "headers": outcome.headers, "body": outcome.body.decode()}


def _conflict() -> Problem:
    return Problem(ErrorCode.IDEMPOTENCY_CONFLICT, "this Idempotency-Key was already used for a different request")


def _in_flight() -> Problem:
    return Problem(GatewayCode.IDEMPOTENCY_IN_FLIGHT,
                   "the first request with this Idempotency-Key is still in flight; retry later",
                   headers={"Retry-After": "1"})


async def _release(kv: KeyValue, name: str, revision: int) -> None:
    # Best effort: if this fails the record goes stale and the next retry takes it over.
    with contextlib.suppress(Exception):
        await asyncio.shield(kv.delete(name, last=revision))


def _encode(record: dict[str, Any]) -> bytes:
    return encode_json(record)


def _now_ms() -> int:
    return int(time.time() * 1000)
