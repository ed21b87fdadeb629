"""Parsing caller input at the edge: enums and options models, with errors that teach.

Every layer validates an operation's options once, where they enter (SDK call, REST body,
CLI flags), into one pydantic model; the service, remote client and committer pass that
object on unchanged. :func:`parse_options` builds such a model from keyword arguments and
turns pydantic's errors into :class:`~strata.core.errors.InvalidInput` naming the field,
what was expected and what was received. :func:`parse_enum` does the same for one value.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from strata.core.errors import InvalidInput

E = TypeVar("E", bound=Enum)
M = TypeVar("M", bound=BaseModel)


def parse_enum(
    cls: type[E], value: Any, field: str, *, what: str | None = None, upper: bool = False
) -> E:
    """``cls(value)`` (of ``str(value).upper()`` with ``upper``), or InvalidInput naming
    ``what`` (default: ``field``), the value received and the allowed values, with
    ``details == {"field": field}``."""
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).upper() if upper else value)
    except ValueError:
        allowed = [v.value for v in cls]
        raise InvalidInput(
            f"Unknown {what or field} {value!r}; expected one of: {', '.join(map(str, allowed))}",
            details={"field": field},
        ) from None


def parse_options(cls: type[M], options: M | None = None, **fields: Any) -> M:
    """``options`` with ``fields`` applied over it (or a fresh ``cls(**fields)``), validated.

    Unknown field names and invalid values raise InvalidInput; the message names the field
    and the problem, ``details`` lists every problem (``{"field", "problem"}``) and, for an
    unknown name, the valid ones.
    """
    if options is not None and not isinstance(options, cls):
        raise InvalidInput(
            f"options must be a {cls.__name__}, got {type(options).__name__}",
            details={"field": "options"},
        )
    base = options.model_dump(exclude_unset=True) if options is not None else {}
    try:
        return cls.model_validate(base | fields)
    except ValidationError as exc:
        raise options_error(cls, exc) from None


def options_error(cls: type[BaseModel], exc: ValidationError) -> InvalidInput:
    """One InvalidInput for a model's validation errors (first problem in the message)."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "options"
        problem = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            problem = f"unknown option; valid options are {', '.join(sorted(cls.model_fields))}"
        problems.append({"field": field, "problem": problem})
    first = problems[0] if problems else {"field": "options", "problem": "invalid"}
    return InvalidInput(
        f"Invalid {cls.__name__}: {first['field']}: {first['problem']}",
        details={"field": first["field"], "errors": problems},
    )
