"""Operator endpoints (ops tokens only): services with their stats and breakers, dead letters, rebuild/verify all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from contracts.base import INT64_MAX
from contracts.dlq import DlqList, DlqReplay, DlqReplayReply, dlq_replay_subject
from contracts.errors import ErrorCode, QtError
from contracts.gateway import EndpointView, ServiceInstance, ServicesReply
from contracts.streams import StreamsReply
from contracts.subjects import DLQ_SERVICE, WalletEndpoint, wallet_partition, wallet_subject
from contracts.wallet import RebuildCommand, RebuildReply, VerifyCommand, VerifyReply
from gateway.auth import ops
from gateway.idempotency import Outcome
from gateway.openapi import doc, schema
from gateway.payload import idempotency_key, read_object, validate
from gateway.problems import encode_json
from gateway.state import Gateway, gateway, json_response
from gateway.tokens import Principal
from mesh.dlq import list_parked, read_parked
from mesh.partitions import every_partition, merge_rebuild, merge_verify
from mesh.streams import jetstream_overview

router = APIRouter(prefix="/v1", tags=["ops"])
Ops = Annotated[Principal, Depends(ops)]
Gw = Annotated[Gateway, Depends(gateway)]


@router.get("/services", summary="Services, endpoint stats and breakers (ops)", **doc(reply=schema(ServicesReply)))
async def services(who: Ops, gw: Gw) -> Response:
    """Every micro service instance (`$SRV.INFO` + `$SRV.STATS`): endpoints, requests, errors, breaker states."""
    found = sorted((_instance(i) for i in await gw.bridge.discover()), key=lambda i: (i.name, i.id))
    return json_response(ServicesReply(services=found).model_dump())


@router.get("/ops/streams", summary="Streams, consumer lag, buckets and leases (ops)",
            **doc(reply=schema(StreamsReply)))
async def streams(who: Ops, gw: Gw) -> Response:
    """Every JetStream stream with its consumers (`pending` is the lag), the KV buckets, and who holds
    each partition lease (with its fencing token)."""
    return json_response((await jetstream_overview(gw.bridge.client().jetstream())).model_dump())


@router.get("/ops/dlq", summary="Parked messages (ops)", **doc(reply=schema(DlqList)))
async def dlq(who: Ops, gw: Gw, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    """Messages durable consumers gave up on, oldest first, with how many are parked in all."""
    entries, total = await list_parked(gw.bridge.client().jetstream(), limit)
    return json_response(DlqList(entries=entries, total=total).model_dump())


@router.post("/ops/dlq/{seq}/replay", summary="Replay a parked message (ops)",
             **doc(reply=schema(DlqReplayReply), idempotent=True))
async def dlq_replay(request: Request, seq: Annotated[int, Path(ge=1, le=INT64_MAX)], who: Ops, gw: Gw) -> Response:
    """Run a parked message through the consumer that parked it; on success it leaves DLQ."""
    key = idempotency_key(request)
    body = await read_object(request)
    command = validate(DlqReplay, {**body, "seq": seq})

    async def execute() -> Outcome:
        msg = await read_parked(gw.bridge.client().jetstream(), command.seq)
        service = (msg.headers or {}).get(DLQ_SERVICE)
        if not service:
            raise QtError(ErrorCode.VALIDATION, f"DLQ seq {command.seq} names no service ({DLQ_SERVICE} header)")
        return await gw.forward(request, dlq_replay_subject(service), command)()

    return await gw.once(request, who, key, who.account, body, execute)


@router.post("/ops/rebuild", summary="Rebuild every account (ops)", **doc(reply=schema(RebuildReply), idempotent=True))
async def rebuild_all(request: Request, who: Ops, gw: Gw) -> Response:
    """Replay every projection from the latest snapshots and prove it identical."""
    key = idempotency_key(request)
    body = await read_object(request)
    command = validate(RebuildCommand, body)

    partitions = gw.settings.wallet_partitions
    # one account lives on one partition; every account is on all of them
    owners = [wallet_partition(command.account, partitions)] if command.account else list(range(partitions))

    async def execute() -> Outcome:
        replies = await every_partition(owners, lambda p: gw.call(
            request, wallet_subject(WalletEndpoint.REBUILD, p), command, timeout=120))
        return Outcome(200, encode_json(merge_rebuild(replies)))

    return await gw.once(request, who, key, who.account, body, execute)


@router.get("/ops/verify", summary="Verify every account (ops)", **doc(reply=schema(VerifyReply)))
async def verify_all(request: Request, who: Ops, gw: Gw) -> Response:
    """Check the whole hash chain and every snapshot from genesis, on every wallet partition."""
    replies = await every_partition(range(gw.settings.wallet_partitions), lambda p: gw.call(
        request, wallet_subject(WalletEndpoint.VERIFY, p), VerifyCommand(), timeout=120))
    return json_response(merge_verify(replies))


def _instance(instance: dict[str, Any]) -> ServiceInstance:
    info, stats = instance.get("info") or {}, instance.get("stats") or {}
    endpoints, breakers = [], {}
    for endpoint in stats.get("endpoints") or []:
        data = endpoint.get("data")
        if isinstance(data, dict) and isinstance(data.get("breakers"), dict):
            breakers.update(data["breakers"])
        endpoints.append(EndpointView.model_validate({k: endpoint.get(k) for k in EndpointView.model_fields}))
    return ServiceInstance(name=info.get("name") or stats.get("name", ""), id=info.get("id") or stats.get("id", ""),
                           version=info.get("version") or stats.get("version", ""), started=stats.get("started"),
                           endpoints=endpoints, breakers=breakers)
