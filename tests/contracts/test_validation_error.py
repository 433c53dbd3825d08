"""One mapping from a schema failure to `validation_error`, shared by the nodes, the gateway and the CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.codec import Wire
from contracts.errors import ErrorCode, validation_error
from contracts.wallet import Deposit


def test_every_failure_is_listed_and_the_first_names_the_message() -> None:
    with pytest.raises(ValidationError) as caught:
        Deposit.model_validate({"account": "a", "asset": "USD", "amount": "1", "op_id": "x" * 200, "extra": 1},
                               context={"wire": Wire.JSON})
    error = validation_error(caught.value.errors(include_url=False, include_input=False))
    assert error.code is ErrorCode.VALIDATION
    locs = [e["loc"] for e in error.detail["errors"]]
    assert len(locs) >= 2 and "extra" in locs
    assert error.message == f"{locs[0]}: {error.detail['errors'][0]['msg']}"


def test_no_details_still_says_what_failed() -> None:
    assert validation_error([]).message == "body: invalid"
