"""The runner dispatches through an explicit step table that must name exactly the contract's steps."""

from __future__ import annotations

import pytest

from contracts.clearing import COMPENSATIONS, STEPS, HoldReleased, SagaRecord, StepResult
from nodes.clearing.runner import check_table


async def _body(saga: SagaRecord) -> StepResult:
    return HoldReleased(hold_kept=0)


def test_a_table_naming_every_step_and_compensation_is_taken() -> None:
    table = {name: _body for name in (*STEPS, *COMPENSATIONS)}
    assert check_table(table) == table


def test_a_table_missing_a_compensation_is_refused_at_construction() -> None:
    table = {name: _body for name in (*STEPS, *COMPENSATIONS) if name != "release_hold"}
    with pytest.raises(ValueError, match="missing \\['release_hold'\\]"):
        check_table(table)


def test_a_table_with_a_name_the_contract_does_not_know_is_refused() -> None:
    table = {name: _body for name in (*STEPS, *COMPENSATIONS, "table")}
    with pytest.raises(ValueError, match="unknown \\['table'\\]"):
        check_table(table)
