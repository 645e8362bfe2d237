"""What every model of the API is built from: the `Model` and `Spec` base classes, the CRD's
field types (`Integer`, `Duration`), and CEL rules (`cel`, `cel_string`, `at_least`). Rules a
structural schema cannot express are CEL rules (`x-kubernetes-validations`) attached to the
models, mirrored by pydantic validators so that the CRD and the models reject the same specs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from plateau.api import fieldsets
from plateau.api.durations import DURATION_PATTERN, ParsedDuration, parse_duration

CEL = "x-kubernetes-validations"
_object_setattr = object.__setattr__


def cel_string(text: str) -> str:
    """A CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected (the CRD prunes them instead).
    Instances with the same fields set share one set of their names (plateau.api.fieldsets)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    if not TYPE_CHECKING:  # pydantic's own signatures for the type checker

        def model_post_init(self, context: Any, /) -> None:
            _object_setattr(self, "__pydantic_fields_set__", fieldsets.shared(self.__pydantic_fields_set__))

        def model_copy(self, *, update: Any = None, deep: bool = False) -> Any:
            fields = self.__pydantic_fields_set__
            copied = super().model_copy(update=update, deep=deep)
            _object_setattr(copied, "__pydantic_fields_set__", fields if not update or fields.issuperset(update)
                            else fieldsets.shared(copied.__pydantic_fields_set__))
            return copied

        def __setattr__(self, name: str, value: Any) -> None:
            _object_setattr(self, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))  # its own, to change
            super().__setattr__(name, value)


class Spec(Model):
    """Base of what users write: JSON types as strict as the CRD's (the API server rejects "5"
    for an integer and "false" for a boolean; an integer is a fine number), and no inf or NaN,
    which JSON cannot carry (kubectl fails on YAML's .inf). Enum fields take their string values."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


INT64 = (-(2**63), 2**63 - 1)


def integral(value: Any) -> Any:
    """An integral float (5.0) is an integer, as the API server reads JSON; beyond int64 an
    integer is not (the server reads it as a float, and its integer check refuses that)."""
    if isinstance(value, float) and value.is_integer() and INT64[0] <= value <= INT64[1]:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return float(value)
    return value


# An integer as the CRD's `type: integer` takes it.
Integer = Annotated[int, BeforeValidator(integral)]
OptionalInteger = Annotated[Optional[int], BeforeValidator(integral)]  # bounds then reach the CRD


def lax(**kwargs: Any) -> Any:
    """A Field whose enum takes its string value in a Spec's strict mode."""
    return Field(strict=False, **kwargs)


def _check_duration(value: Any) -> Any:
    if isinstance(value, str):  # anything else is a type error, reported by the strict check
        parse_duration(value)
    return value


# A Go-style duration; the pattern goes into the CRD, the validator names negative values,
# and the value is a ParsedDuration: the text on the wire, its seconds for the engine.
if TYPE_CHECKING:
    Duration = ParsedDuration
else:
    Duration = Annotated[
        str,
        Field(pattern=DURATION_PATTERN, max_length=64),
        BeforeValidator(_check_duration),
        AfterValidator(ParsedDuration),
    ]


def at_least(minimum: str, reason: str = "") -> list[Any]:
    """Metadata for a Duration of at least `minimum`: a CEL rule, so that `kubectl apply`
    rejects a shorter one, and the same check for the models."""
    message = f"must be at least {minimum}"

    def check(value: ParsedDuration) -> ParsedDuration:
        if value.seconds < parse_duration(minimum):
            raise ValueError(f"{message}: {reason}" if reason else message)
        return value

    return [Field(json_schema_extra={CEL: [cel(f"duration(self) >= duration('{minimum}')", message)]}),
            AfterValidator(check)]
