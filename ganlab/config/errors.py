"""pydantic's validation errors in ganlab's words: one sentence about the first error, naming the dotted key
as the user wrote it (never a union's internal tag), with "did you mean ...?" when a key or a name is
misspelt."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

SUGGEST_CUTOFF = 0.6  # difflib similarity a near miss needs to be suggested


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest choice, or an empty string when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=SUGGEST_CUTOFF)
    return f" Did you mean '{close[0]}'?" if close else ""


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` down to X."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _tag_of(member: Any) -> tuple[str, ...]:
    if isinstance(member, type) and issubclass(member, BaseModel) and "name" in member.model_fields:
        return typing.get_args(_unwrap(member.model_fields["name"].annotation))
    return ()


def walk(root: type[BaseModel], loc: tuple) -> tuple[list[str], Any]:
    """The location as the user wrote it (a discriminated union's tag dropped) and the type at its end."""
    node: Any = root
    keys: list[str] = []
    for part in loc:
        node = _unwrap(node)
        origin = typing.get_origin(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            keys.append(str(part))
            field = node.model_fields.get(str(part))
            node = field.annotation if field is not None else None
        elif origin in (Union, types.UnionType):
            members = [m for m in typing.get_args(node) if str(part) in _tag_of(m)]
            if members:  # the union's tag: not a key the user wrote
                node = members[0]
            else:
                keys.append(str(part))
                node = None
        elif origin is dict:
            keys.append(str(part))
            node = typing.get_args(node)[1]
        else:
            keys.append(str(part))
            node = None
    return keys, _unwrap(node)


def _names(text: str) -> list[str]:
    """``'a', 'b' or 'c'`` -> [a, b, c]"""
    return re.findall(r"'([^']*)'", text)


def format_validation_error(err: ValidationError, root: type[BaseModel], prefix: str = "") -> tuple[str, str]:
    """The first error as (dotted key, sentence); one precise error reads better than a list of ten."""
    first = err.errors()[0]
    loc, _ = walk(root, tuple(first["loc"]))
    kind = first["type"]
    cross_field = re.match(r"^Value error, @([\w.]+): (.*)$", first["msg"])
    if cross_field:  # a validator over several keys names the one to change as "@key: message"
        loc.append(cross_field.group(1))
        first = {**first, "msg": cross_field.group(2), "input": {}}
    elif first["msg"].startswith("Value error, "):
        first = {**first, "msg": first["msg"][len("Value error, "):]}
    if kind == "union_tag_invalid":
        loc.append("name")
    key = ".".join(([prefix] if prefix else []) + loc)
    if kind == "extra_forbidden":
        _, container = walk(root, tuple(first["loc"])[:-1])
        fields = list(container.model_fields) if isinstance(container, type) and issubclass(container, BaseModel) else []
        msg = "unknown key (misspelt, or not valid in this section)." + did_you_mean(loc[-1], fields)
    elif kind == "union_tag_invalid":
        tag, expected = first["ctx"]["tag"], _names(first["ctx"]["expected_tags"])
        msg = f"{loc[-2]}.name {tag!r} is not one of: {', '.join(expected)}.{did_you_mean(tag, expected)}"
    elif kind == "literal_error":
        expected = _names(first["ctx"]["expected"])
        got = first.get("input")
        msg = f"{got!r} is not one of: {', '.join(expected)}.{did_you_mean(got, expected)}"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = f"{first['msg']}{shown}."
    n = len(err.errors())
    if n > 1:
        msg += f" ({n - 1} more error{'s' if n > 2 else ''} after this one.)"
    return key, msg

