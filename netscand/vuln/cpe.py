"""CPE 2.3 formatted strings (NISTIR 7695 section 6.2), parsed totally: any text gives a Cpe or None.

A formatted string is "cpe:2.3:" and eleven attributes separated by unescaped colons; a backslash
quotes the next character; a lone "*" is ANY and a lone "-" is NA (not applicable). Values are kept
unescaped and lowercased (CPE names are case-insensitive), so criteria and a port's name compare as
text. An escaped lone "\\-" or "\\*" would read as NA or ANY: no real name uses one.
"""

from __future__ import annotations

from dataclasses import dataclass

ANY = "*"
NA = "-"
PREFIX = "cpe:2.3:"
_MAX_LEN = 1024  # NVD's longest criteria are ~200 characters; a longer text is not a CPE name
_ATTRIBUTES = 11
_PARTS = frozenset({"a", "o", "h", ANY})


@dataclass(frozen=True)
class Cpe:
    part: str  # "a" application, "o" operating system, "h" hardware
    vendor: str
    product: str
    version: str = ANY
    update: str = ANY
    edition: str = ANY
    language: str = ANY
    sw_edition: str = ANY
    target_sw: str = ANY
    target_hw: str = ANY
    other: str = ANY

    def extras(self) -> tuple[str, ...]:
        """The attributes after update, which a criterion may pin (edition ... other)."""
        return (self.edition, self.language, self.sw_edition, self.target_sw, self.target_hw, self.other)


def parse(text: object) -> Cpe | None:
    """The Cpe a CPE 2.3 formatted string names, or None for anything else (never raises)."""
    if not isinstance(text, str) or len(text) > _MAX_LEN or not text.lower().startswith(PREFIX):
        return None
    values = _split(text[len(PREFIX):])
    # Some tools drop trailing ANY attributes; vendor and product are the least a name needs.
    if values is None or not 3 <= len(values) <= _ATTRIBUTES:
        return None
    values += [ANY] * (_ATTRIBUTES - len(values))
    if values[0] not in _PARTS or ANY in (values[1], values[2]) or "" in values:
        return None
    return Cpe(*values)


def _split(body: str) -> list[str] | None:
    """body split on unescaped colons, each value unescaped and lowercased; None on a dangling '\\'."""
    values: list[str] = []
    current: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            quoted = next(chars, None)
            if quoted is None:
                return None
            current.append(quoted)
        elif char == ":":
            values.append("".join(current).lower())
            current = []
        else:
            current.append(char)
    values.append("".join(current).lower())
    return values

