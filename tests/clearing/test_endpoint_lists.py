"""Each node registers exactly the endpoints its contract lists (`contracts.subjects.*_ENDPOINTS`), as
micro discovery (`$SRV.INFO`) shows them on a real server."""

from __future__ import annotations

import json
import socket

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.instruments import INSTRUMENTS
from contracts.subjects import (
    CLEARING_ENDPOINTS,
    CLEARING_SERVICE,
    MARKETDATA_ENDPOINTS,
    MARKETDATA_SERVICE,
    MATCHING_ENGINE_ENDPOINTS,
    MATCHING_INSTRUMENT_ENDPOINTS,
    MATCHING_SERVICE,
    METRICS_ENDPOINT,
    SAGA_PEEK_ENDPOINT,
    WALLET_ENDPOINTS,
    WALLET_SERVICE,
    clearing_owner_subject,
    wallet_subject,
)
from tests.clearing.platform import Platform
from tests.polling import eventually


async def test_every_node_serves_exactly_its_contracts_endpoints(fresh: Platform) -> None:
    await fresh.start_all()
    await fresh.start("market_data", wait=False)  # its service is `marketdata`: awaited below
    contract = {service: [(name, f"{service}.{name}") for name in endpoints] for service, endpoints in (
        (CLEARING_SERVICE, CLEARING_ENDPOINTS),
        (MARKETDATA_SERVICE, MARKETDATA_ENDPOINTS), (MATCHING_SERVICE, MATCHING_ENGINE_ENDPOINTS))}
    # one wallet partition: its endpoints on `wallet.p0.<name>`, metrics shared by every partition
    contract[WALLET_SERVICE] = [
        (name, f"{WALLET_SERVICE}.{name}" if name == METRICS_ENDPOINT else wallet_subject(name, 0))
        for name in WALLET_ENDPOINTS]
    # one engine owning every instrument: each instrument's endpoints on `matching.<instrument>.<name>`
    # and each clearing instance its own `saga_peek`, under the owner name its saga records carry
    clearing_pid = next(p.proc.pid for p in fresh.procs if p.module == "nodes.clearing" and p.proc is not None)
    contract[CLEARING_SERVICE].append(
        (SAGA_PEEK_ENDPOINT, clearing_owner_subject(f"{socket.gethostname()}:{clearing_pid}")))
    contract[MATCHING_SERVICE] += [(f"{symbol}-{name}", f"{MATCHING_SERVICE}.{symbol}.{name}")
                                   for symbol in INSTRUMENTS for name in MATCHING_INSTRUMENT_ENDPOINTS]

    for service, endpoints in contract.items():
        reply = await eventually(lambda s=service: fresh.nc.request(f"$SRV.INFO.{s}", b"", timeout=2),
                                 ignoring=(NoRespondersError, NatsTimeoutError), what=f"{service} INFO")
        info = json.loads(reply.data)
        registered = sorted((e["name"], e["subject"]) for e in info["endpoints"])
        assert registered == sorted(endpoints), service
