"""`qt req`, `qt micro ls`, `qt token`, `qt wallet events|balance` and tick errors against one real `qt up`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.subjects import wallet_account_subject
from tests.tooling.harness import QT, QtUp
from tooling.connection import find_data_dir

pytestmark = pytest.mark.slow  # one real `qt up` for the module


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QtUp]:
    """One `qt up` (no demo seed) shared by this module's read-mostly tests; each uses its own accounts."""
    up = QtUp(tmp_path_factory.mktemp("cli") / "data").start()
    try:
        up.wait_ready()
        yield up
    finally:
        with contextlib.suppress(Exception):
            up.interrupt()
        up.cleanup()


def req(platform: QtUp, subject: str, body: str) -> subprocess.CompletedProcess[str]:
    """`qt req <subject> <body>` against the platform."""
    return platform.qt("req", subject, body)


def on(endpoint: str, account: str) -> str:
    """`wallet.p<n>.<endpoint>` of the partition (of the two `qt up` runs) that owns `account`."""
    return wallet_account_subject(endpoint, account, 2)


def usd_of(platform: QtUp, account: str) -> str:
    """The account's USD available, read through `qt req wallet.p<n>.balance`."""
    reply = req(platform, on("balance", account), json.dumps({"account": account}))
    assert reply.returncode == 0, reply.stderr
    return str(json.loads(reply.stdout)["balances"]["USD"]["available"])


def test_req_sends_json_and_prints_the_json_reply(platform: QtUp) -> None:
    body = {"account": "rita", "asset": "USD", "amount": "3.00", "op_id": "req-rita-1"}
    done = req(platform, on("deposit", "rita"), json.dumps(body))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changes"][0]["available"] == "3.00"
    assert usd_of(platform, "rita") == "3.00"


def test_req_error_reply_exits_1_and_changes_nothing(platform: QtUp) -> None:
    req(platform, on("deposit", "sam"), '{"account":"sam","asset":"USD","amount":"1.00","op_id":"req-sam-1"}')
    body = '{"account":"sam","asset":"USD","amount":"5.00","op_id":"req-sam-2"}'
    refused = req(platform, on("withdraw", "sam"), body)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error insufficient_funds: "), refused.stderr
    assert usd_of(platform, "sam") == "1.00"


@pytest.mark.parametrize(("subject", "body", "says"), [
    ("wallet.p0.balance", '{"account":', "the request body is not valid JSON"),
    ("wallet.p0.balance", "alice", "the request body is not valid JSON"),
    ("wallet.p0.balance", '["alice"]', "the request body must be a JSON object, got list"),
    ("wallet.*", "{}", "is not a NATS subject one can request"),
    ("wallet..balance", "{}", "is not a NATS subject one can request"),
])
def test_req_refuses_bad_input_before_sending(platform: QtUp, subject: str, body: str, says: str) -> None:
    refused = req(platform, subject, body)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error validation_error: ") and says in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_req_to_a_subject_nobody_serves_says_no_responders(platform: QtUp) -> None:
    refused = req(platform, "nothing.here", "{}")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error unavailable: no responders on nothing.here"


def test_micro_ls_lists_every_instance_with_its_endpoints(platform: QtUp) -> None:
    listed = platform.qt("micro", "ls")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith("│")]
    services = [row.split("│")[1].strip() for row in rows if row.split("│")[1].strip()]
    assert sorted(set(services)) == ["clearing", "marketdata", "matching", "wallet"], listed.stdout
    assert services.count("clearing") == 2  # both instances, each with its own id
    assert services.count("wallet") == 2  # one instance per partition
    for endpoint in ("wallet.p0.deposit", "wallet.p1.deposit", "matching.AAPL.submit", "clearing.place_order",
                     "marketdata.ticker"):
        assert endpoint in listed.stdout


def test_balance_of_an_unknown_account_is_an_error(platform: QtUp) -> None:
    refused = platform.qt("wallet", "balance", "nobody")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error unknown_account: unknown account nobody"), refused.stderr


def deposited(listing: str) -> list[str]:
    """The USD amounts of the `deposited` rows of `qt wallet events`, top to bottom."""
    return re.findall(r"deposited\s*│\s*USD\s*│\s*([0-9.]+)\s*│", listing)


def test_events_page_newest_first_by_default_and_oldest_first_on_request(platform: QtUp) -> None:
    for amount in ("1.00", "2.00", "3.00"):
        assert platform.qt("wallet", "deposit", "evan", "USD", amount).returncode == 0
    first = platform.qt("wallet", "events", "evan", "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert deposited(first.stdout) == ["3.00", "2.00"]
    cursor = re.search(r"next: --before (\d+)$", first.stdout.strip())
    assert cursor, first.stdout
    rest = platform.qt("wallet", "events", "evan", "--limit", "2", "--before", cursor.group(1))
    assert deposited(rest.stdout) == ["1.00"] and "next: none" in rest.stdout
    oldest = platform.qt("wallet", "events", "evan", "--limit", "2", "--oldest-first")
    assert deposited(oldest.stdout) == ["1.00", "2.00"] and "--oldest-first" in oldest.stdout


def test_token_signs_with_the_platforms_key_from_anywhere(platform: QtUp, tmp_path: Path) -> None:
    env = {k: v for k, v in platform.env.items() if k not in ("QT_NATS_URL",)}
    made = subprocess.run([QT, "token", "--account", "rita"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    reply = httpx.get(f"http://127.0.0.1:{platform.http_port}/v1/accounts/rita/balances",
                      headers={"Authorization": f"Bearer {made.stdout.strip()}"}, timeout=30)
    assert reply.status_code == 200, reply.text


def test_token_without_the_platforms_key_fails_and_makes_none(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-platform"
    empty.mkdir()
    env = dict(os.environ, QT_DATA_DIR=str(empty))
    made = subprocess.run([QT, "token", "--account", "alice"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert made.returncode == 1 and made.stdout == ""
    assert made.stderr.startswith(f"error not_found: no token signing key at {empty}/secrets/"), made.stderr
    assert list(empty.iterdir()) == []


def test_outside_the_repository_the_cli_finds_the_installs_data_dir(tmp_path: Path) -> None:
    elsewhere, install = tmp_path / "elsewhere", tmp_path / "repo"
    elsewhere.mkdir()
    (install / "data").mkdir(parents=True)
    assert find_data_dir(None, elsewhere, install) == install / "data"
    (elsewhere / "data").mkdir()
    assert find_data_dir(None, elsewhere, install) == elsewhere / "data"
    assert find_data_dir("/srv/qt", elsewhere, install) == Path("/srv/qt")


def test_tick_errors_speak_decimals_on_every_edge(platform: QtUp) -> None:
    says = "price must be a multiple of the tick 0.10"
    cli = platform.qt("order", "place", "alice", "ETH-USD", "BUY", "1", "--price", "3450.05")
    assert cli.returncode == 1 and cli.stderr.strip() == f"error price_off_tick: {says}", cli.stderr
    nats = req(platform, "clearing.place_order",
               '{"account":"alice","instrument":"ETH-USD","side":"BUY","price":"3450.05","qty":"1"}')
    assert nats.returncode == 1 and nats.stderr.strip() == f"error price_off_tick: {says}", nats.stderr
    token = platform.qt("token", "--account", "alice").stdout.strip()
    http = httpx.post(f"http://127.0.0.1:{platform.http_port}/v1/orders", timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "tick-1"},
                      json={"instrument": "ETH-USD", "side": "BUY", "price": "3450.05", "qty": "1"})
    assert http.status_code == 422 and http.json()["detail"] == says, http.text
