"""The key pair on first boot, tokens minted by `qt token` and verified by the gateway's verifier."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, GatewayCode, Role
from gateway.keys import ensure_key_pair, load_private, load_public
from gateway.problems import Problem
from gateway.tokens import TokenVerifier, mint
from tests.tooling.harness import QT


def verifier(data_dir: Path) -> TokenVerifier:
    return TokenVerifier(load_public(ensure_key_pair(data_dir)[1]), issuer=JWT_ISSUER, audience=JWT_AUDIENCE)


def test_the_pair_is_created_once_and_private(tmp_path: Path) -> None:
    private, public = ensure_key_pair(tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o600
    before = private.read_bytes()
    assert ensure_key_pair(tmp_path) == (private, public)
    assert private.read_bytes() == before


def test_a_lost_public_half_is_derived_again(tmp_path: Path) -> None:
    private, public = ensure_key_pair(tmp_path)
    expected = public.read_bytes()
    public.unlink()
    ensure_key_pair(tmp_path)
    assert public.read_bytes() == expected
    assert load_private(private).public_key() == load_public(public)


def test_qt_token_mints_what_the_gateway_accepts(tmp_path: Path) -> None:
    ensure_key_pair(tmp_path)  # as the gateway does on its first start
    made = subprocess.run([QT, "token", "--account", "alice", "--role", "ops", "--ttl", "120",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    who = verifier(tmp_path).verify(made.stdout.strip())
    assert (who.account, who.role) == ("alice", Role.OPS)


def test_qt_token_refuses_a_bad_account_or_ttl(tmp_path: Path) -> None:
    for args in (["--account", "a b"], ["--account", "a", "--ttl", "5"], ["--account", "a", "--role", "root"]):
        made = subprocess.run([QT, "token", *args, "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert made.returncode != 0, (args, made.stdout)
        assert "Traceback" not in made.stderr


def test_tokens_within_the_leeway_still_pass(tmp_path: Path) -> None:
    key = load_private(ensure_key_pair(tmp_path)[0])
    recent = mint(key, account="bob", role=Role.TRADER, ttl_s=60, issuer=JWT_ISSUER, audience=JWT_AUDIENCE,
                  now=time.time() - 90)
    assert verifier(tmp_path).verify(recent).account == "bob"


def test_a_verified_token_is_still_refused_once_it_expires(tmp_path: Path) -> None:
    key = load_private(ensure_key_pair(tmp_path)[0])
    strict = TokenVerifier(load_public(ensure_key_pair(tmp_path)[1]), issuer=JWT_ISSUER, audience=JWT_AUDIENCE,
                           leeway_s=0)
    # valid for one to two more seconds (iat is whole seconds): verified (and remembered) now, expired after
    ending = mint(key, account="carol", role=Role.TRADER, ttl_s=60, issuer=JWT_ISSUER, audience=JWT_AUDIENCE,
                  now=time.time() - 58)
    assert strict.verify(ending).account == "carol"
    assert strict.verify(ending).account == "carol"
    time.sleep(2.5)
    with pytest.raises(Problem) as refused:
        strict.verify(ending)
    assert refused.value.code is GatewayCode.UNAUTHORIZED and "expired" in refused.value.message
    forged = ending[:-4] + ("AAAA" if not ending.endswith("AAAA") else "BBBB")  # never verified: checked in full
    with pytest.raises(Problem):
        strict.verify(forged)


def test_a_trader_may_not_name_another_account(tmp_path: Path) -> None:
    key = load_private(ensure_key_pair(tmp_path)[0])
    token = mint(key, account="bob", role=Role.TRADER, ttl_s=60, issuer=JWT_ISSUER, audience=JWT_AUDIENCE)
    who = verifier(tmp_path).verify(token)
    assert who.acting_on(None) == who.acting_on("bob") == "bob"
    with pytest.raises(Problem) as refused:
        who.acting_on("alice")
    assert refused.value.status == 403
    with pytest.raises(Problem) as forbidden:
        who.require_ops()
    assert forbidden.value.code is GatewayCode.FORBIDDEN
