"""Adapter: configuration problems, worded for the administrator who edits the file.

Every problem reads `"<file>: <dotted.key.path>: <what is wrong>"`, e.g.
`config/acd.example.yaml: criteria[1].options[0].key: must be one DTMF key 0-9, * or #`.
YAML syntax errors use `line N` in place of the key path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError


class ConfigError(Exception):
    """The deployment cannot be loaded; `.problems` lists every reason found, one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


Loc = tuple[str | int, ...]


def dotted(loc: Iterable[str | int]) -> str:
    """('criteria', 1, 'options', 0, 'key') -> 'criteria[1].options[0].key'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic marks a mapping key that failed; the key itself says enough
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class Problems:
    """Collects problems for one file so a single run reports all of them."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append(f"{self.file}: {dotted(loc)}: {message}")

    def at_line(self, line: int, message: str) -> None:
        self.items.append(f"{self.file}: line {line}: {message}")

    def whole(self, message: str) -> None:
        self.items.append(f"{self.file}: {message}")

    def from_validation(self, error: ValidationError, prefix: Loc = ()) -> None:
        for err in error.errors(include_url=False):
            self.add(prefix + tuple(err["loc"]), _message(err))

    def __bool__(self) -> bool:
        return bool(self.items)


def yaml_number(value: float) -> str:
    """A number as YAML writes it, so .nan and .inf read as they were typed."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


_SECRET_KEYS = frozenset({"secret", "password", "passwd", "token"})
_SHOULD = re.compile(r"^(Input|Value|String|List|Dictionary|Tuple|Date|Datetime|Decimal|Data) should ")


def _message(err: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        if loc and str(loc[-1]).lower() in _SECRET_KEYS:
            return "secrets never go in this file: name the environment variable that holds it (secret_env)"
        return "unknown key (misspelt, or not allowed here)"
    if kind in ("value_error", "assertion_error"):
        return str(err["ctx"]["error"])
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping (key: value lines)"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "finite_number":
        value = err.get("input")
        typed = yaml_number(value) if isinstance(value, float) else repr(value)
        return f"must be an ordinary number, not {typed} (YAML's not-a-number or infinity)"
    message = _SHOULD.sub("must ", err["msg"])
    value = err.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f" (got {value!r})"
    return message
