"""Which failures a caller waits out (the dependency did not answer) and which it must not retry."""

from __future__ import annotations

import pytest
from nats.errors import ConnectionClosedError, MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BadRequestError, NoStreamResponseError, ServiceUnavailableError

from contracts.errors import ErrorCode, QtError
from nodes.runtime.client import is_transient


@pytest.mark.parametrize("failure", [
    QtError(ErrorCode.UNAVAILABLE, "down"), QtError(ErrorCode.TIMEOUT, "slow"), ConnectionClosedError(),
    NoRespondersError(), NatsTimeoutError(), NoStreamResponseError(), ServiceUnavailableError(), TimeoutError(),
    ConnectionResetError(),
], ids=repr)
def test_a_dependency_that_did_not_answer_is_transient(failure: BaseException) -> None:
    assert is_transient(failure)


@pytest.mark.parametrize("failure", [
    QtError(ErrorCode.AMOUNT_OUT_OF_RANGE, "too much"), QtError(ErrorCode.INSUFFICIENT_FUNDS, "poor"),
    QtError(ErrorCode.VALIDATION, "bad"), QtError(ErrorCode.UNKNOWN_ACCOUNT, "who"),
    QtError(ErrorCode.INTERNAL, "bug"), MaxPayloadError(), BadRequestError(), KeyError("bug"), OverflowError(),
], ids=repr)
def test_a_refusal_or_a_bug_is_deterministic(failure: BaseException) -> None:
    assert not is_transient(failure)
