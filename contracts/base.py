"""Base models for every message: strict, closed, and money-aware on both wires."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, ValidationInfo, model_serializer
from pydantic import model_validator as _model_validator

from contracts.codec import Wire
from contracts.money import check_units, format_amount, parse_amount, scale_of

ACCOUNT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Account = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
#: op_id / hold_id / order ids: printable ASCII without spaces or subject wildcards.
OpId = Annotated[str, Field(pattern=r"^[!-~]{1,128}$")]
Asset = Annotated[str, Field(pattern=r"^[A-Z]{2,10}$")]
#: The largest integer a sequence, cursor or timestamp may be: SQLite's (and msgpack's signed) int64.
INT64_MAX: Final = 2**63 - 1
#: A stream sequence, event cursor or epoch-ms timestamp: past int64 it is refused, not crashed on.
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]


def wire_of(context: Any) -> Wire:
    """The wire a validation/serialization context speaks; msgpack when none is given."""
    if isinstance(context, dict) and (wire := context.get("wire")) is not None:
        return wire if type(wire) is Wire else Wire(wire)  # the enum's constructor costs a µs per message
    return Wire.MSGPACK


class Message(BaseModel):
    """A contract message: unknown fields refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MoneyMessage(Message):
    """A message whose money fields are decimal strings in JSON and integer units in msgpack.

    `__money_fields__` names the fields; `asset` gives their scale (override `_assets_of` when
    the scale comes from elsewhere, e.g. an instrument's quote and base).
    """

    __money_fields__: ClassVar[tuple[str, ...]] = ("amount",)
    __zero_ok__: ClassVar[bool] = False

    @classmethod
    def _assets_of(cls, data: dict[str, Any]) -> dict[str, str]:
        """Which asset's scale each money field uses; empty when it cannot be told yet."""
        asset = data.get("asset")
        if not isinstance(asset, str):
            return {}
        scale_of(asset)
        return dict.fromkeys(cls.__money_fields__, asset)

    @_model_validator(mode="before")
    @classmethod
    def _money_in(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        assets = cls._assets_of(data)
        if not assets:
            return data
        if wire_of(info.context) is not Wire.JSON:  # integer units are checked, not converted: no copy
            for name, asset in assets.items():
                value = data.get(name)
                if value is not None:
                    check_units(asset, value, allow_zero=cls.__zero_ok__)
            return data
        out = dict(data)
        for name, asset in assets.items():
            value = out.get(name)
            if value is not None:
                out[name] = parse_amount(asset, value, allow_zero=cls.__zero_ok__)
        return out

    @model_serializer(mode="wrap")
    def _money_out(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if wire_of(info.context) is Wire.JSON:
            for name, asset in self._assets_of(data).items():
                value = data.get(name)
                if isinstance(value, int):
                    data[name] = format_amount(asset, value)
        return data


def dump(model: BaseModel, wire: Wire) -> dict[str, Any]:
    """Serialize a model for the wire (decimal strings in JSON, integer units in msgpack)."""
    return model.model_dump(mode="python", context={"wire": wire}, exclude_none=False)
