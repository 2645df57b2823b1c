"""msgspec's validation errors read apart: the API's 422s and the config file's errors both name
the input at fault, so both need the message, the path and the field an object lacks or has too
many of. One reader, so both follow msgspec's one grammar:

    "Expected `int | null`, got `str` - at `$.timeout_ms`"
    "Expected `str`, got `int` - at `$.target[1]`"
    "Object contains unknown field `colour` - at `$.daemon`" (no " - at" at the top level)
    "Object missing required field `target`"
"""

from __future__ import annotations

import re
from typing import NamedTuple

import msgspec

# A name in a path or a message: anything but the path's own punctuation.
_NAME = r"[^.\[`]+"
_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_STEP = re.compile(rf"\.({_NAME})|\[([^\]]*)\]")
# The whole rest of the message: a name here is not in a path, so it may hold any character.
_FIELD = re.compile(r"Object (?P<what>contains unknown|missing required) field `(?P<name>.*)`", re.DOTALL)
_TYPES = re.compile(r"`([a-zA-Z]+(?: \| [a-zA-Z]+)*)`")
# msgspec writes Python's type names; a client wrote JSON, so its types are said in JSON's words.
_JSON_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
               "object": "an object", "dict": "an object", "array": "an array", "list": "an array",
               "null": "null", "None": "null"}
# msgspec quotes a refused value whole ("Invalid enum value '...'"): an error answers with a
# glimpse of it, not with as much as the other side chose to send.
MESSAGE_MAX = 200


class Failure(NamedTuple):
    """What msgspec refused: its message (types in JSON's words), where, and which field."""

    message: str
    steps: tuple[str | int, ...]  # the path from the top: names and list indexes ("..." for a dict key)
    unknown: str | None  # the field an object has that its model does not declare
    missing: str | None  # the field an object lacks that its model requires


def failure(exc: msgspec.ValidationError) -> Failure:
    parts = _AT.fullmatch(str(exc))
    assert parts is not None  # every string matches: the path is optional
    steps = tuple(name or (int(index) if index.isdigit() else index)
                  for name, index in _STEP.findall(parts["path"] or ""))
    field = _FIELD.fullmatch(parts["message"])
    unknown = field["name"] if field and field["what"] == "contains unknown" else None
    missing = field["name"] if field and field["what"] == "missing required" else None
    message = _TYPES.sub(_in_json, parts["message"])
    if len(message) > MESSAGE_MAX:
        message = message[:MESSAGE_MAX - 3] + "..."
    return Failure(message, steps, unknown, missing)


def _in_json(types: re.Match[str]) -> str:
    names = types[1].split(" | ")
    if not all(name in _JSON_NAMES for name in names):
        return types[0]  # a name of msgspec's own (a Struct's), left as written
    return " or ".join(_JSON_NAMES[name] for name in names)
