"""MLflow's words for a run search that is refused: its filter, ``order_by`` and page-token
checks (MLflow 3's search utilities and SQL store), in the order its server makes them.

Strata's own parser (``strata/tracking/search.py``) decides what a search accepts; this module
only words a refusal on the MLflow surface. When a search is refused, the same request is
checked here as MLflow's server checks it, and the first thing that server refuses is named
in its words: ``Invalid attribute key 'foo' specified. Valid keys are '{...}'``,
``Invalid clause(s) in filter string: 'OR'``, ``Invalid page token, could not base64-decode``.
When MLflow's server would accept what Strata refused (a page token of its own offsets, say),
Strata's words stay. The filter is split into tokens by ``sqlparse``, the SQL tokenizer
MLflow's server uses, so each clause is grouped (and quoted back) as that server groups it.

MLflow prints its sets of valid keys and comparators with Python's ``repr`` of a set, whose
order changes from one server process to the next: here they are printed in one fixed order
(tests compare them as sets).
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlparse
from sqlparse import tokens as ttypes
from sqlparse.sql import Comparison, Identifier, Parenthesis, Statement, Token, TokenList

from strata.core.errors import InvalidInput
from strata.core.page import MAX_TOKEN_LENGTH
from strata.tracking.mlflow_api._common import run_sync
from strata.tracking.search import MAX_ORDER_KEYS

_T = TypeVar("_T")

_METRIC, _PARAM, _TAG, _ATTRIBUTE, _DATASET = "metric", "parameter", "tag", "attribute", "dataset"
_ENTITIES = [_METRIC, _PARAM, _TAG, _ATTRIBUTE, _DATASET]
_ALIASES = {
    "metrics": _METRIC,
    "parameters": _PARAM,
    "param": _PARAM,
    "params": _PARAM,
    "tags": _TAG,
    "attr": _ATTRIBUTE,
    "attributes": _ATTRIBUTE,
    "run": _ATTRIBUTE,
    "datasets": _DATASET,
} | {e: e for e in _ENTITIES}

_METRIC_OPS = (">", ">=", "!=", "=", "<", "<=")
_KEY_VALUE_OPS = ("!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL")  # params and tags
_STRING_OPS = ("!=", "=", "LIKE", "ILIKE", "IN", "NOT IN")  # text attributes and datasets
_NUMERIC_ATTRS = ("start_time", "end_time", "created", "Created")
_DATASET_KEYS = ("name", "digest", "context")
_LIST_KEYS = ("run_id",)
_ORDER_KEYS = (
    "artifact_uri",
    "end_time",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
    "created",
    "Created",
)
_FILTER_KEYS = (*_ORDER_KEYS, "run name", "Run name", "Run Name")
_NUMBERS = (ttypes.Literal.Number.Integer, ttypes.Literal.Number.Float)
_STRINGS = (ttypes.Literal.String.Single,)


class _Refused(Exception):
    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


@dataclass
class _Comparison:
    kind: str
    key: str
    comparator: str = ""
    value: Any = None


MAX_WORDED_TEXT = 4096
"""The longest filter or ``order_by`` item worded as MLflow words it: sqlparse's time grows
with the text (about 10 ms a kilobyte), so a longer one keeps Strata's words, which its own
parser found at once."""


def _worded(
    check: Callable[[], None],
    filter_string: str | None,
    order_by: Sequence[str] | None,
    page_token: str | None,
) -> str | None:
    """The words of the refusal ``check()`` raises; None when it refuses nothing, when the
    request is larger than any worded here (text, keys, token), or when the check itself
    fails (what MLflow's server fails on with a 500, a list nested past Python's depth...):
    the refusal then keeps Strata's words, never becoming an error of its own."""
    orders = order_by or []
    if (
        len(filter_string or "") > MAX_WORDED_TEXT
        or len(orders) > MAX_ORDER_KEYS
        or any(len(o) > MAX_WORDED_TEXT for o in orders)
        or len(page_token or "") > MAX_TOKEN_LENGTH
    ):
        return None
    try:
        check()
    except _Refused as refused:
        return refused.words
    except Exception:  # the refusal stands, in Strata's words
        return None
    return None


def run_search_words(
    filter_string: str | None, order_by: Sequence[str] | None, page_token: str | None
) -> str | None:
    """MLflow's words for the first thing its server refuses in this run search; None when
    it would refuse none of the three."""

    def check() -> None:
        comparisons = _filter(filter_string)
        for clause in order_by or []:
            _order_by(clause)
        for comparison in comparisons:
            _comparator(comparison)
        _page_token(page_token)

    return _worded(check, filter_string, order_by, page_token)


def _page_token(token: str | None) -> None:
    """Refuse ``token`` as MLflow's server refuses a page token (it reads ``{"offset": N}``
    in base64)."""
    if not token:
        return
    try:
        decoded = base64.b64decode(token)
    except (TypeError, binascii.Error):
        raise _Refused("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise _Refused(f"Invalid page token, decoded value={decoded!r}") from None
    if not isinstance(parsed, dict):
        raise ValueError("MLflow's server fails on it itself (a 500): not worded")
    offset = parsed.get("offset")
    if not offset:
        raise _Refused(f"Invalid page token, parsed value={parsed}")
    try:
        int(offset)
    except (TypeError, ValueError):
        raise _Refused(f"Invalid page token, not stringable {offset}") from None


def page_words(token: str | None) -> str | None:
    """MLflow's words for a page token its server refuses (any search by offset); None when
    it would take it."""
    return _worded(lambda: _page_token(token), None, None, token)


async def worded(
    words: Callable[[], str | None], fields: tuple[str, ...], fn: Callable[..., _T], **kwargs: Any
) -> _T:
    """``fn(**kwargs)`` off the event loop; when it refuses one of ``fields`` (a search's
    ``filter``, ``order_by`` or ``page_token``), the refusal carries ``words()``: MLflow's
    words for the same search, where its server refuses it too."""
    try:
        return await run_sync(fn, **kwargs)
    except InvalidInput as exc:
        if exc.details.get("field") in fields:
            exc.peer_words = await run_sync(words)
        raise


# -- the filter ---------------------------------------------------------------------------------
def _statement(text: str) -> list[Any]:
    """The filter's tokens as MLflow's server groups them (one statement, comparisons
    joined)."""
    try:
        parsed = sqlparse.parse(text)
    except Exception:  # sqlparse's own failures, as MLflow words them
        raise _Refused(f"Error on parsing filter '{text}'") from None
    if not parsed or not isinstance(parsed[0], Statement):
        raise _Refused(f"Invalid filter '{text}'. Could not be parsed.")
    if len(parsed) > 1:
        raise _Refused(
            f"Search filter contained multiple expression {text!r}. Provide AND-ed expression list."
        )
    return _join_comparisons(parsed[0].tokens)


def _invalid(tokens: list[Any]) -> list[Any]:
    """What is neither a comparison nor ``AND``."""
    return [
        t
        for t in tokens
        if not (
            isinstance(t, Comparison)
            or t.is_whitespace
            or t.match(ttype=ttypes.Keyword, values=["AND"])
        )
    ]


def _filter(text: str | None) -> list[_Comparison]:
    if not text:
        return []
    tokens = _statement(text)
    invalid = _invalid(tokens)
    if invalid:
        listed = ", ".join(f"'{t}'" for t in invalid)
        raise _Refused(f"Invalid clause(s) in filter string: {listed}")
    return [_comparison(t, _run_key, _run_nulls) for t in tokens if isinstance(t, Comparison)]


def _keyword(token: Any, word: str) -> bool:
    return token is not None and bool(token.match(ttype=ttypes.Keyword, values=[word]))


def _join_comparisons(all_tokens: list[Any]) -> list[Any]:
    """``x IN (...)``, ``x NOT IN (...)``, ``x IS NULL`` and ``x IS NOT NULL`` made one
    comparison each (sqlparse leaves them apart), as MLflow's server joins them."""
    tokens = [t for t in all_tokens if not t.is_whitespace]
    out: list[Any] = []
    i = 0
    while i < len(tokens):
        if len(tokens) - i < 3:
            out.extend(tokens[i:])
            break
        first, second, third = tokens[i : i + 3]
        if not isinstance(first, Identifier):  # until an identifier starts a comparison
            out.append(first)
            i += 1
            continue
        if _keyword(second, "IN") and isinstance(third, Parenthesis):
            out.append(Comparison(TokenList([first, second, third])))
            i += 3
            continue
        if _keyword(second, "IS") and _keyword(third, "NULL"):
            out.append(Comparison(TokenList([first, Token(ttypes.Keyword, "IS NULL")])))
            i += 3
            continue
        if (
            _keyword(second, "IS")
            and third.ttype == ttypes.Keyword
            and third.value.upper() == "NOT NULL"
        ):
            out.append(Comparison(TokenList([first, Token(ttypes.Keyword, "IS NOT NULL")])))
            i += 3
            continue
        if i + 3 >= len(tokens):
            out.extend([first, second, third])
            break
        fourth = tokens[i + 3]
        if _keyword(second, "NOT") and _keyword(third, "IN") and isinstance(fourth, Parenthesis):
            out.append(Comparison(TokenList([first, Token(ttypes.Keyword, "NOT IN"), fourth])))
        else:
            out.extend([first, second, third, fourth])
        i += 4
    return out


def _comparison(
    token: Comparison,
    identify: Callable[[str], _Comparison],
    nulls: Callable[[_Comparison], None],
    numeric: Sequence[str] = _NUMERIC_ATTRS,
    lists: Sequence[str] = _LIST_KEYS,
) -> _Comparison:
    """One comparison as MLflow reads it: ``identify`` names its key, ``nulls`` refuses an
    ``IS [NOT] NULL`` of a kind that has none, ``numeric``/``lists`` are the attributes
    compared with numbers and with lists."""
    parts = [t for t in token.tokens if not t.is_whitespace]
    bad = "Invalid comparison clause"
    if len(parts) == 2 and parts[1].value.upper() in ("IS NULL", "IS NOT NULL"):
        if not isinstance(parts[0], Identifier):
            raise _Refused(f"{bad}. Expected 'Identifier' found '{parts[0]}'")
        found = identify(parts[0].value)
        nulls(found)
        found.comparator = parts[1].value.upper()
        return found
    if len(parts) != 3:
        raise _Refused(f"{bad}. Expected 3 tokens found {len(parts)}")
    if not isinstance(parts[0], Identifier):
        raise _Refused(f"{bad}. Expected 'Identifier' found '{parts[0]}'")
    found = identify(parts[0].value)
    found.comparator = parts[1].value
    _value(found, parts[2], numeric, lists)
    return found


def _run_key(identifier: str) -> _Comparison:
    return _identifier(identifier, _FILTER_KEYS)


def _run_nulls(found: _Comparison) -> None:
    if found.kind not in (_TAG, _PARAM):
        raise _Refused(
            "IS NULL / IS NOT NULL is only supported for tags and params, "
            f"not for '{found.kind}' '{found.key}'"
        )


def _quoted(value: str, mark: str) -> bool:
    return len(value) >= 2 and value.startswith(mark) and value.endswith(mark)


def _strip_quotes(value: str, *, expected: bool = False) -> str:
    if _quoted(value, "'") or _quoted(value, '"'):
        return value[1:-1]
    if expected:
        raise _Refused(
            "Parameter value is either not quoted or unidentified quote types used for "
            f"string value {value}. Use either single or double quotes."
        )
    return value


def _trim_backticks(value: str) -> str:
    return value[1:-1] if _quoted(value, "`") else value


def _set(items: Sequence[str]) -> str:
    return "{" + ", ".join(repr(i) for i in items) + "}"


def _identifier(identifier: str, keys: Sequence[str]) -> _Comparison:
    entity, dot, key = identifier.partition(".")
    if not dot:
        entity, key = _ATTRIBUTE, entity
    entity = _trim_backticks(entity)
    kind = _ALIASES.get(entity)
    if kind is None:
        raise _Refused(f"Invalid entity type '{entity}'. Valid values are {_ENTITIES}")
    key = _trim_backticks(_strip_quotes(key))
    if kind == _ATTRIBUTE and key not in keys:
        raise _Refused(f"Invalid attribute key '{key}' specified. Valid keys are '{_set(keys)}'")
    if kind == _DATASET and key not in _DATASET_KEYS:
        raise _Refused(
            f"Invalid dataset key '{key}' specified. Valid keys are '{_set(_DATASET_KEYS)}'"
        )
    return _Comparison(kind, key)


def _text_value(token: Any) -> bool:
    return token.ttype in _STRINGS or isinstance(token, Identifier)


def _value(
    found: _Comparison,
    token: Any,
    numeric: Sequence[str] = _NUMERIC_ATTRS,
    lists: Sequence[str] = _LIST_KEYS,
) -> None:
    """The comparison's value as MLflow reads it (``found.value``), or its refusal."""
    kind, key, value = found.kind, found.key, token.value
    if kind == _METRIC:
        if token.ttype not in _NUMBERS:
            raise _Refused(f"Expected numeric value type for metric. Found {value}")
        found.value = value
    elif kind in (_PARAM, _TAG):
        if not _text_value(token):
            raise _Refused(
                f"Expected a quoted string value for {kind} (e.g. 'my-value'). Got value {value}"
            )
        found.value = _strip_quotes(value, expected=True)
    elif kind == _ATTRIBUTE:
        if key in numeric:
            if token.ttype not in _NUMBERS:
                raise _Refused(
                    f"Expected numeric value type for numeric attribute: {key}. Found {value}"
                )
            integer = token.ttype == ttypes.Literal.Number.Integer
            found.value = int(value) if integer else float(value)
        elif _text_value(token):
            found.value = _strip_quotes(value, expected=True)
        elif isinstance(token, Parenthesis):
            if key not in lists:
                raise _Refused(
                    f"Only {sorted(lists)} attributes support comparison with a list of "
                    "quoted string values."
                )
            found.value = _string_list(value)
        else:
            raise _Refused(f"Expected a quoted string value for attributes. Got value {value}")
    elif kind == _DATASET:
        if _text_value(token):
            found.value = _strip_quotes(value, expected=True)
        elif isinstance(token, Parenthesis):
            found.value = _string_list(value)
        else:
            raise _Refused(
                f"Expected a quoted string value for dataset attributes. Got value {value}"
            )


def _string_list(text: str) -> tuple[Any, ...]:
    """A parenthesised list as MLflow reads it: a Python literal of strings, one at least."""
    start = "While parsing a list in the query,"
    try:
        parsed = ast.literal_eval(text)
    except SyntaxError:
        raise _Refused(
            f"{start} expected a non-empty list of string values, but got ill-formed list."
        ) from None
    items = parsed if isinstance(parsed, tuple) else (parsed,)
    if not items:
        raise _Refused(f"{start} expected a non-empty list of string values, but got empty list")
    if not all(isinstance(x, str) for x in items):
        raise _Refused(
            f"{start} expected string value, punctuation, or whitespace, but got different "
            f"type in list: {items}"
        )
    return items


def _alias(key: str) -> str:
    if key in ("created", "Created"):
        return "start_time"
    if key in ("run name", "Run name", "Run Name"):
        return "run_name"
    return key


def _comparator(found: _Comparison) -> None:
    """Each comparison's operator against its kind's (checked after the order, as the SQL
    store builds its clauses). MLflow's own messages close the quote for some kinds only,
    and name the text attributes' set for a numeric attribute: copied as they are."""
    op, kind, key = found.comparator.upper(), found.kind, _alias(found.key)
    allowed: tuple[str, ...]
    if kind == _ATTRIBUTE and key not in _NUMERIC_ATTRS:
        allowed, shown, close = _STRING_OPS, _STRING_OPS, "'"
    elif kind == _ATTRIBUTE:
        allowed, shown, close = _METRIC_OPS, _STRING_OPS, ""
    elif kind == _METRIC:
        allowed, shown, close = _METRIC_OPS, _METRIC_OPS, ""
    elif kind == _PARAM:
        allowed, shown, close = _KEY_VALUE_OPS, _KEY_VALUE_OPS, "'"
    elif kind == _TAG:
        allowed, shown, close = _KEY_VALUE_OPS, _KEY_VALUE_OPS, ""
    else:
        allowed, shown, close = _STRING_OPS, _STRING_OPS, ""
    if op not in allowed:
        raise _Refused(f"Invalid comparator '{op}' not one of '{_set(shown)}{close}")


# -- order_by -----------------------------------------------------------------------------------
def _order_by(clause: str) -> None:
    found = _identifier(_order_key(clause), _ORDER_KEYS)
    if found.kind == _DATASET:
        raise _Refused(f"Invalid identifier type '{_DATASET}'")


def _order_key(clause: str) -> str:
    """The key of an ``order_by`` clause (its direction checked), as MLflow parses it."""
    unparsed = f"Invalid order_by clause '{clause}'. Could not be parsed."
    try:
        parsed = sqlparse.parse(clause)
    except Exception:
        raise _Refused(f"Error on parsing order_by clause '{clause}'") from None
    if len(parsed) != 1 or not isinstance(parsed[0], Statement):
        raise _Refused(unparsed)
    tokens = parsed[0].tokens
    first, last = tokens[0], tokens[-1]
    text: str
    if len(tokens) == 1 and isinstance(first, Identifier):
        text = str(first.value)
    elif len(tokens) == 1 and first.match(ttype=ttypes.Name.Builtin, values=["timestamp"]):
        text = "timestamp"
    elif (
        first.match(ttype=ttypes.Name.Builtin, values=["timestamp"])
        and all(t.is_whitespace for t in tokens[1:-1])
        and last.ttype == ttypes.Keyword.Order
    ):
        text = f"timestamp {last.value}"
    else:
        raise _Refused(unparsed)
    words = shlex.split(text.replace("`", '"'))
    if len(words) > 2:
        raise _Refused(unparsed)
    if len(words) == 2:
        if words[1].lower() not in ("asc", "desc"):
            raise _Refused(f"Invalid ordering key in order_by clause '{clause}'.")
        text = words[0]
    return text.strip()


# -- experiments --------------------------------------------------------------------------------
_EXPERIMENT_KEYS = ("name", "experiment_id", "creation_time", "last_update_time")
_EXPERIMENT_NUMERIC = ("creation_time", "last_update_time")
_EXPERIMENT_ENTITIES = ("attribute", "tag", "tags")
_LISTS = ("experiment_id",)


def experiment_search_words(
    filter_string: str | None, order_by: Sequence[str] | None, page_token: str | None
) -> str | None:
    """MLflow's words for the first thing its server refuses in this experiment search (the
    filter, its comparators, the order, the page token); None when it would refuse none."""

    def check() -> None:
        comparisons = _experiment_filter(filter_string)
        for comparison in comparisons:
            _experiment_comparator(comparison)
        for clause in order_by or []:
            found = _experiment_identifier(_order_key(clause))
            if found.kind != _ATTRIBUTE:
                raise _Refused(f"Invalid order_by entity: {found.kind}")
        _page_token(page_token)

    return _worded(check, filter_string, order_by, page_token)


def _experiment_filter(text: str | None) -> list[_Comparison]:
    if not text:
        return []
    tokens = _statement(text)
    invalid = _invalid(tokens)
    if invalid:  # unquoted, unlike a run search's
        raise _Refused(f"Invalid clause(s) in filter string: {', '.join(map(str, invalid))}")
    return [
        _comparison(t, _experiment_identifier, _experiment_nulls, _EXPERIMENT_NUMERIC, _LISTS)
        for t in tokens
        if isinstance(t, Comparison)
    ]


def _experiment_nulls(found: _Comparison) -> None:
    if found.kind != _TAG:
        raise _Refused(
            f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{found.key}'"
        )


def _experiment_identifier(identifier: str) -> _Comparison:
    entity, dot, key = identifier.partition(".")
    if not dot:
        kind, key = _ATTRIBUTE, entity
    elif entity not in _EXPERIMENT_ENTITIES:
        raise _Refused(
            f"Invalid entity type '{entity}'. Valid entity types are {_EXPERIMENT_ENTITIES}"
        )
    else:
        kind = _ALIASES[entity]
    key = _trim_backticks(_strip_quotes(key))
    if kind == _ATTRIBUTE and key not in _EXPERIMENT_KEYS:
        raise _Refused(
            f"Invalid attribute key '{key}' specified. Valid keys are '{_set(_EXPERIMENT_KEYS)}'"
        )
    return _Comparison(kind, key)


def _experiment_comparator(found: _Comparison) -> None:
    """As MLflow's SQL store checks an experiment filter's clauses (operators as written,
    not upper-cased; its own words for each kind)."""
    op, key, value = found.comparator, found.key, found.value
    if found.kind == _TAG:
        if op not in ("IS NULL", "IS NOT NULL", "=", "!=", "LIKE", "ILIKE"):
            raise _Refused(f"Invalid comparator for tag: {op}")
    elif key == "experiment_id":
        if op not in ("=", "!=", "IN", "NOT IN"):
            raise _Refused(f"Invalid comparator for experiment_id: {op}")
        for one in value if isinstance(value, tuple) else (value,):
            try:
                int(one)
            except (TypeError, ValueError):
                raise _Refused(
                    f"Invalid experiment ID '{one}'. Experiment ID must be a valid integer."
                ) from None
    elif key not in _EXPERIMENT_NUMERIC:
        if op not in _STRING_OPS:
            raise _Refused(f"Invalid comparator '{op}' not one of '{_set(_STRING_OPS)}'")
        if op not in ("=", "!=", "LIKE", "ILIKE"):
            raise _Refused(f"Invalid comparator for string attribute: {op}")
    else:
        if op not in _METRIC_OPS:
            raise _Refused(f"Invalid comparator '{op}' not one of '{_set(_STRING_OPS)}")
        if isinstance(value, float):
            raise _Refused(f"Invalid value for numeric attribute '{key}': {str(value)!r}")
