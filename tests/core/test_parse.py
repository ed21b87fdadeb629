from __future__ import annotations

from enum import StrEnum

import pytest
from pydantic import BaseModel, ConfigDict

from strata.core.errors import InvalidInput
from strata.core.parse import parse_enum, parse_options


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Status(StrEnum):
    DONE = "DONE"


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    color: Color = Color.RED
    size: int = 1


def test_parse_enum_names_field_allowed_and_received() -> None:
    assert parse_enum(Color, "blue", "color") is Color.BLUE
    assert parse_enum(Color, Color.RED, "color") is Color.RED
    with pytest.raises(InvalidInput, match="Unknown paint colour 'Blue'"):
        parse_enum(Color, "Blue", "color", what="paint colour")
    assert parse_enum(Status, "done", "status", upper=True) is Status.DONE
    with pytest.raises(InvalidInput) as info:
        parse_enum(Color, "green", "color")
    assert info.value.message == "Unknown color 'green'; expected one of: red, blue"
    assert info.value.details == {"field": "color"}


def test_parse_options_keywords_over_object() -> None:
    base = Opts(size=3)
    merged = parse_options(Opts, base, color="blue")
    assert (merged.color, merged.size) == (Color.BLUE, 3)
    assert base.color is Color.RED  # the caller's object is not changed
    assert parse_options(Opts).size == 1


def test_parse_options_errors_teach() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_options(Opts, colour="blue")
    assert info.value.details["field"] == "colour"
    assert "valid options are color, size" in info.value.message
    with pytest.raises(InvalidInput) as info:
        parse_options(Opts, size="big")
    assert info.value.details["field"] == "size" and "integer" in info.value.message
    with pytest.raises(InvalidInput) as info:
        parse_options(Opts, {"size": 1})  # type: ignore[arg-type]
    assert info.value.details["field"] == "options"
