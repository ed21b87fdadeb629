"""Expectation suites: the models, the catalogue of supported expectations, and loading.

A suite is written in YAML (the contract other tools rely on)::

    name: flights
    expectations:
      - expect_column_values_to_not_be_null: {column: dep_time, mostly: 0.95}
      - expect_column_values_to_be_between: {column: dep_delay, min_value: -60, max_value: 1500}
      - expect_column_values_to_be_in_set: {column: origin, value_set: [EWR, JFK, LGA]}

or as a Great Expectations suite JSON (``{"expectations": [{"type" | "expectation_type": ...,
"kwargs": {...}, "meta": {...}}]}``); both entry forms are accepted in both files. Kwargs are
checked when an :class:`Expectation` is built, so a suite written in Python is checked too.
Every problem raises :class:`~strata.core.errors.InvalidInput` naming the expectation (its
position and, for YAML text, its line), the kwarg, what was expected and what was received.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from strata.core.errors import InvalidInput

# Kwargs Great Expectations writes into suites that change nothing about the answer here.
_IGNORED_KWARGS = frozenset({"result_format", "catch_exceptions", "include_config", "batch_id"})
# Kwargs that would change the answer but have no equivalent here: refused, never ignored.
_UNSUPPORTED_KWARGS = {
    "row_condition": "filter the relation before validating instead",
    "condition_parser": "filter the relation before validating instead",
}
# Top-level keys of a GE expectation entry that are descriptive: kept in ``meta``.
_META_KEYS = ("meta", "description", "notes", "id", "severity", "rendered_content")

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a text like ``"90s"``, ``"2h"``, ``"1d12h"``.

    Raises ValueError (with the accepted forms) for anything else or a non-positive duration.
    """
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like '2h', '3d', '1d12h'")
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
            raise ValueError("expected seconds or a duration like '90s', '15m', '2h', '3d', '1w'")
        seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    else:
        raise ValueError("expected seconds or a duration like '2h', '3d', '1d12h'")
    if seconds <= 0:
        raise ValueError("expected a positive duration")
    return seconds


# --- kwarg checks: each returns None when the value is fine, else what was expected ---------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _check_column(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a column name (non-empty text)"


def _check_mostly(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= float(v) <= 1 else "a fraction between 0 and 1"


def _check_bound(v: Any) -> str | None:
    if v is None or _is_number(v) or isinstance(v, str | dt.date | dt.datetime):
        return None
    return "a number, a date/time (ISO text) or null"


def _check_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _check_scalar_list(v: Any) -> str | None:
    scalars = (str, int, float, Decimal, bool, dt.date, dt.datetime, type(None))
    if isinstance(v, list | tuple | set | frozenset) and all(isinstance(x, scalars) for x in v):
        return None
    return "a list of values (text, numbers, booleans or dates)"


def _check_regex(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a regular expression (non-empty text)"


def _check_text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "non-empty text"


def _check_column_index(v: Any) -> str | None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return None
    return "a column position (integer >= 0) or null"


def _check_ignore_row_if(v: Any) -> str | None:
    choices = ("both_values_are_missing", "either_value_is_missing", "neither")
    return None if v in choices else "one of " + ", ".join(choices)


def _check_duration(v: Any) -> str | None:
    try:
        parse_duration(v)
    except ValueError as exc:
        return str(exc).removeprefix("expected ")
    return None


def _check_query(v: Any) -> str | None:
    expected = "one SQL SELECT using the {relation} placeholder for the data being validated"
    if not (isinstance(v, str) and ("{relation}" in v or "{batch}" in v)):
        return expected
    import duckdb

    # DuckDB's own parser: exactly one SELECT (no COPY/EXPORT/ATTACH, no second statement).
    probe = f"SELECT COUNT(*) FROM ({v.replace('{relation}', '_r').replace('{batch}', '_r')}) _q"
    try:
        kinds = [s.type for s in duckdb.extract_statements(probe)]
    except duckdb.Error:
        return expected + " (this one does not parse)"
    if kinds != [duckdb.StatementType.SELECT]:
        return expected + "; read-only: COPY, EXPORT, ATTACH or a second statement are refused"
    return None


@dataclass(frozen=True)
class Kwarg:
    check: Callable[[Any], str | None]
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class ExpectationSpec:
    """What one expectation type accepts and how it is evaluated.

    ``kind`` is ``map`` (a yes/no question per row; NULLs ignored unless it is the null check;
    has a row-level form), ``aggregate`` (one statistic over the column or table), ``schema``
    (answered from the relation's schema) or ``query`` (its own SQL).
    """

    name: str
    kind: str
    kwargs: dict[str, Kwarg]
    column_kwargs: tuple[str, ...] = ()
    needs_bound: bool = False


_COLUMN = Kwarg(_check_column, required=True)
_MOSTLY = Kwarg(_check_mostly, default=1.0)
_BOUNDS = {
    "min_value": Kwarg(_check_bound),
    "max_value": Kwarg(_check_bound),
    "strict_min": Kwarg(_check_bool, default=False),
    "strict_max": Kwarg(_check_bool, default=False),
}


def _agg_between(name: str) -> ExpectationSpec:
    return ExpectationSpec(name, "aggregate", {"column": _COLUMN, **_BOUNDS}, ("column",))


SPECS: dict[str, ExpectationSpec] = {
    s.name: s
    for s in (
        ExpectationSpec(
            "expect_column_to_exist",
            "schema",
            {"column": _COLUMN, "column_index": Kwarg(_check_column_index)},
        ),
        ExpectationSpec(
            "expect_column_values_to_not_be_null",
            "map",
            {"column": _COLUMN, "mostly": _MOSTLY},
            ("column",),
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            "map",
            {"column": _COLUMN, **_BOUNDS, "mostly": _MOSTLY},
            ("column",),
            needs_bound=True,
        ),
        ExpectationSpec(
            "expect_column_values_to_be_in_set",
            "map",
            {"column": _COLUMN, "value_set": Kwarg(_check_scalar_list, True), "mostly": _MOSTLY},
            ("column",),
        ),
        ExpectationSpec(
            "expect_column_values_to_match_regex",
            "map",
            {"column": _COLUMN, "regex": Kwarg(_check_regex, True), "mostly": _MOSTLY},
            ("column",),
        ),
        ExpectationSpec(
            "expect_column_values_to_be_unique",
            "map",
            {"column": _COLUMN, "mostly": _MOSTLY},
            ("column",),
        ),
        ExpectationSpec(
            "expect_column_values_to_be_of_type",
            "schema",
            {"column": _COLUMN, "type_": Kwarg(_check_text, True), "mostly": _MOSTLY},
            ("column",),
        ),
        ExpectationSpec(
            "expect_table_row_count_to_be_between",
            "aggregate",
            {k: v for k, v in _BOUNDS.items()},
        ),
        _agg_between("expect_column_mean_to_be_between"),
        _agg_between("expect_column_median_to_be_between"),
        _agg_between("expect_column_stdev_to_be_between"),
        _agg_between("expect_column_proportion_of_unique_values_to_be_between"),
        ExpectationSpec(
            "expect_column_pair_values_a_to_be_greater_than_b",
            "map",
            {
                "column_A": _COLUMN,
                "column_B": _COLUMN,
                "or_equal": Kwarg(_check_bool, default=False),
                "ignore_row_if": Kwarg(_check_ignore_row_if, default="both_values_are_missing"),
                "mostly": _MOSTLY,
            },
            ("column_A", "column_B"),
        ),
        ExpectationSpec(
            "expect_column_max_to_be_recent",
            "aggregate",
            {"column": _COLUMN, "max_age": Kwarg(_check_duration, True)},
            ("column",),
        ),
        ExpectationSpec(
            "expect_sql_query_to_return_no_rows",
            "query",
            {"query": Kwarg(_check_query, True)},
        ),
        # Great Expectations' own name for the custom-SQL check (GE 1.x), same semantics.
        ExpectationSpec(
            "unexpected_rows_expectation",
            "query",
            {"unexpected_rows_query": Kwarg(_check_query, True)},
        ),
    )
}


def supported_expectations() -> list[str]:
    """The expectation type names this engine runs, sorted."""
    return sorted(SPECS)


def _unknown_type_message(name: str) -> str:
    close = difflib.get_close_matches(name, SPECS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown expectation type {name!r}.{hint} Supported: " + ", ".join(
        supported_expectations()
    )


def check_kwargs(type_: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs of one expectation, checked; GE-only bookkeeping kwargs are dropped.

    Raises InvalidInput naming the expectation and the kwarg that is missing, unknown or wrong.
    """
    spec = SPECS.get(type_)
    if spec is None:
        raise InvalidInput(
            _unknown_type_message(type_), details={"supported": supported_expectations()}
        )
    if not isinstance(kwargs, dict):
        raise InvalidInput(f"{type_}: kwargs must be a mapping, got {type(kwargs).__name__}")
    cleaned: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _IGNORED_KWARGS:
            continue
        if key in _UNSUPPORTED_KWARGS:
            if value in (None, "", "python"):
                continue
            raise InvalidInput(
                f"{type_}: kwarg {key!r} is not supported ({_UNSUPPORTED_KWARGS[key]})",
                details={"expectation": type_, "kwarg": key},
            )
        if key not in spec.kwargs:
            raise InvalidInput(
                f"{type_}: unknown kwarg {key!r}; accepted: {', '.join(spec.kwargs)}",
                details={"expectation": type_, "kwarg": key, "accepted": list(spec.kwargs)},
            )
        problem = spec.kwargs[key].check(value)
        if problem is not None:
            raise InvalidInput(
                f"{type_}: kwarg {key!r} must be {problem}, got {value!r}",
                details={"expectation": type_, "kwarg": key},
            )
        cleaned[key] = value
    for key, arg in spec.kwargs.items():
        if arg.required and key not in cleaned:
            raise InvalidInput(
                f"{type_}: missing required kwarg {key!r}",
                details={"expectation": type_, "kwarg": key},
            )
    lo: Any = cleaned.get("min_value")
    hi: Any = cleaned.get("max_value")
    if _is_number(lo) and _is_number(hi) and lo > hi:
        raise InvalidInput(
            f"{type_}: kwarg 'min_value' ({lo}) must not be greater than 'max_value' ({hi})",
            details={"expectation": type_, "kwarg": "min_value"},
        )
    if spec.needs_bound and lo is None and hi is None:
        raise InvalidInput(
            f"{type_}: at least one of kwargs 'min_value' and 'max_value' must be set",
            details={"expectation": type_, "kwarg": "min_value"},
        )
    return cleaned


class Expectation(BaseModel):
    """One check: a GE expectation type name, its kwargs, and free-form metadata."""

    model_config = ConfigDict(extra="forbid")

    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Expectation:
        self.kwargs = check_kwargs(self.type, self.kwargs)
        return self

    def spec(self) -> ExpectationSpec:
        return SPECS[self.type]

    def arg(self, key: str) -> Any:
        """A kwarg's value, or its default when the suite did not set it."""
        spec = SPECS[self.type]
        return self.kwargs.get(key, spec.kwargs[key].default if key in spec.kwargs else None)

    def columns(self) -> list[str]:
        """The columns this expectation reads (all of them must exist, except for to_exist)."""
        return [self.kwargs[k] for k in SPECS[self.type].column_kwargs if k in self.kwargs]

    def label(self) -> str:
        """``type(col[, col])``: how reports and quarantine reasons name this expectation."""
        cols = self.columns() or ([self.kwargs["column"]] if "column" in self.kwargs else [])
        return f"{self.type}({', '.join(cols)})"


class Suite(BaseModel):
    """A named, ordered list of expectations. Results always come back in this order."""

    name: str = "suite"
    expectations: list[Expectation] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


# --- loading ------------------------------------------------------------------------------


def _entry_lines(text: str) -> list[int | None]:
    """The 1-based line of each entry under ``expectations:`` in YAML text (best effort)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    seq: yaml.Node | None = None
    if isinstance(root, yaml.SequenceNode):
        seq = root
    elif isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "expectations":
                seq = value
    if not isinstance(seq, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in seq.value]


def _parse_entry(entry: Any) -> Expectation:
    if not isinstance(entry, dict) or not entry:
        raise InvalidInput(
            "an expectation must be a mapping like {expect_...: {kwargs}} or "
            f"{{type: expect_..., kwargs: {{...}}}}, got {entry!r}"
        )
    meta: dict[str, Any] = {}
    if "type" in entry or "expectation_type" in entry:
        type_ = entry.get("type", entry.get("expectation_type"))
        kwargs = entry.get("kwargs") or {}
        extra = set(entry) - {"type", "expectation_type", "kwargs", *_META_KEYS}
    else:
        names = [k for k in entry if k not in _META_KEYS]
        if len(names) != 1:
            raise InvalidInput(
                "an expectation entry must name exactly one expectation type, got keys "
                + ", ".join(map(repr, entry))
            )
        type_ = names[0]
        kwargs = dict(entry[type_] or {})
        extra = set()
        if isinstance(kwargs.get("meta"), dict):
            meta.update(kwargs.pop("meta"))
    if extra:
        raise InvalidInput(f"unknown keys in expectation entry: {', '.join(sorted(extra))}")
    if not isinstance(type_, str):
        raise InvalidInput(f"expectation type must be text, got {type_!r}")
    for key in _META_KEYS:
        value = entry.get(key)
        if key == "meta" and isinstance(value, dict):
            meta.update(value)
        elif value not in (None, {}, ""):
            meta[key] = value
    if not isinstance(kwargs, dict):
        raise InvalidInput(f"{type_}: kwargs must be a mapping, got {kwargs!r}")
    return Expectation(type=type_, kwargs=kwargs, meta=meta)


def suite_from_dict(data: Any, *, default_name: str = "suite", text: str | None = None) -> Suite:
    """A suite from parsed YAML/JSON: a mapping with ``expectations`` or a bare list of them.

    ``text`` (the YAML source) lets error messages give each entry's line number.
    """
    if isinstance(data, list):
        data = {"expectations": data}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"a suite must be a mapping with an 'expectations' list, got {type(data).__name__}"
        )
    entries = data.get("expectations")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise InvalidInput(f"'expectations' must be a list, got {type(entries).__name__}")
    name = data.get("name") or data.get("expectation_suite_name") or default_name
    lines = _entry_lines(text) if text is not None else []
    expectations = []
    for i, entry in enumerate(entries):
        try:
            expectations.append(_parse_entry(entry))
        except InvalidInput as exc:
            where = f"expectation #{i + 1}"
            if i < len(lines) and lines[i] is not None:
                where += f" (line {lines[i]})"
            raise InvalidInput(
                f"suite {name!r}, {where}: {exc.message}",
                details={**exc.details, "index": i, "line": lines[i] if i < len(lines) else None},
            ) from None
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return Suite(name=str(name), expectations=expectations, meta=meta or {})


def _yaml_error(exc: yaml.YAMLError, source: str) -> InvalidInput:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        line, col = mark.line + 1, mark.column + 1
        return InvalidInput(
            f"suite {source} is not valid YAML: line {line}, column {col}: {problem}",
            details={"line": line, "column": col},
        )
    return InvalidInput(f"suite {source} is not valid YAML: {problem}")


def _too_deep(source: str) -> InvalidInput:
    return InvalidInput(
        f"suite {source} nests too deeply: a suite is a mapping with a list of expectations, "
        "each a mapping of simple values",
        details={"field": "suite"},
    )


def parse_suite_text(text: str, *, source: str = "text", default_name: str = "suite") -> Suite:
    """A suite from YAML (or JSON, which is YAML) text. Errors carry the line number."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except RecursionError:
        raise _too_deep(source) from None
    if data is None:
        raise InvalidInput(f"suite {source} is empty: expected a mapping with 'expectations'")
    try:
        return suite_from_dict(data, default_name=default_name, text=text)
    except RecursionError:
        raise _too_deep(source) from None


def load_suite(source: str | Path | dict[str, Any]) -> Suite:
    """A suite from YAML text, a ``.yaml``/``.yml``/``.json`` file, or an already-parsed dict.

    Text is taken as a path when it is one line ending in one of those extensions. The suite
    name defaults to the file's stem. Raises InvalidInput for a missing file, bad YAML/JSON
    (with line and column), unknown expectation types (listing the supported ones) and
    missing or wrong kwargs (naming the expectation, its position and the kwarg).
    """
    if isinstance(source, dict):
        try:
            return suite_from_dict(source)
        except RecursionError:
            raise _too_deep("object") from None
    is_path = isinstance(source, Path) or (
        "\n" not in source and source.strip().lower().endswith((".yaml", ".yml", ".json"))
    )
    if not is_path:
        return parse_suite_text(str(source))
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidInput(f"suite file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"suite file {str(path)!r} cannot be read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"suite {str(path)!r} is not valid JSON: line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}",
                details={"line": exc.lineno, "column": exc.colno},
            ) from None
        return suite_from_dict(data, default_name=path.stem)
    return parse_suite_text(text, source=repr(str(path)), default_name=path.stem)
