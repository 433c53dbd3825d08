"""API tokens: EdDSA (Ed25519) JWTs with `sub` = account and a `role`, minted by `qt token`, verified inline."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.errors import ErrorCode
from contracts.gateway import JWT_ALGORITHM, TOKEN_TTL_MAX_S, TOKEN_TTL_MIN_S, GatewayCode, Role
from gateway.problems import Problem

#: The contract's account pattern (contracts.base.Account), checked on every token's subject.
_ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub"]
#: Verified tokens kept (see `TokenVerifier.verify`).
VERIFIED_TOKENS = 10_000


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    account: str
    role: Role
    token_id: str = ""

    @property
    def is_ops(self) -> bool:
        """True for operator tokens."""
        return self.role is Role.OPS

    def acting_on(self, named: object) -> str:
        """The account a request acts on: the token's unless one is named; only ops may name another."""
        if named is None or named == self.account:
            return self.account
        if not isinstance(named, str):
            raise Problem.validation("account: must be a string")
        if self.is_ops:
            return named
        raise Problem(ErrorCode.NOT_OWNER, f"this token acts for {self.account!r} only", {"account": named})

    def require_ops(self) -> None:
        """Refuse a trader on an operator endpoint."""
        if not self.is_ops:
            raise Problem(GatewayCode.FORBIDDEN, "this endpoint needs an ops token", {"role": str(self.role)})


def mint(key: Ed25519PrivateKey, *, account: str, role: Role, ttl_s: int, issuer: str, audience: str,
         now: float | None = None) -> str:
    """A signed token for `account`; `now` lets tests mint tokens that are already expired."""
    if not _ACCOUNT.match(account):
        raise ValueError(f"account {account!r} is not a valid account name")
    if not TOKEN_TTL_MIN_S <= ttl_s <= TOKEN_TTL_MAX_S:
        raise ValueError(f"ttl must be between {TOKEN_TTL_MIN_S} and {TOKEN_TTL_MAX_S} seconds")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": account, "role": str(role), "iss": issuer, "aud": audience,
        "iat": issued, "nbf": issued, "exp": issued + ttl_s, "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


class TokenVerifier:
    """Verifies tokens against one public key with a fixed algorithm list; never trusts the token's `alg`."""

    def __init__(self, key: Ed25519PublicKey, *, issuer: str, audience: str, leeway_s: float = 60.0) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        #: Tokens whose signature and claims were verified: principal and the window they are valid in.
        #: A signature check costs ~0.2 ms of CPU per request; a client reuses its token for hours.
        self._verified: dict[str, tuple[Principal, float, float]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; `unauthorized` with the reason otherwise."""
        known = self._verified.get(token)
        if known is not None and known[1] <= time.time() < known[2]:
            return known[0]
        principal, claims = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS:  # bounded: start over rather than track ages
            self._verified.clear()
        # the same bounds PyJWT checks (with the leeway): not before `nbf` and `iat`, not after `exp`
        self._verified[token] = (principal, max(claims["nbf"], claims["iat"]) - self.leeway_s,
                                 claims["exp"] + self.leeway_s)
        return principal

    def _decode(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[JWT_ALGORITHM], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s, options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except jwt.InvalidAlgorithmError:
            raise _unauthorized(f"token algorithm not allowed (only {JWT_ALGORITHM})") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("token audience is not this API") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("token issuer is not trusted") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("token not valid yet") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"invalid token: {exc}"[:120]) from None
        subject, role = claims.get("sub"), claims.get("role")
        if not isinstance(subject, str) or not _ACCOUNT.match(subject):
            raise _unauthorized("token subject is not an account")
        try:
            parsed = Role(str(role))
        except ValueError:
            raise _unauthorized("token role must be trader or ops") from None
        return Principal(subject, parsed, str(claims.get("jti", ""))), claims


def _unauthorized(reason: str) -> Problem:
    return Problem(GatewayCode.UNAUTHORIZED, reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
