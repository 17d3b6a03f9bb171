"""Adapter: core events and commands ⇄ JSON, for passing them between nodes through PostgreSQL.

Type-directed: each frozen dataclass is written as its fields, and read back by following
its type hints (enums by value, frozensets and tuples as lists, `X | None`). Only the
events a follower forwards and the commands the panels need are known; anything else is
refused with `CodecError`, never guessed.

`PolicyReloaded` carries no policy across: each node reads the same deployment file, so the
leader reloads its own (`policy` argument of `decode_event`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from acd.core import events as ev
from acd.core.policy import RoutingPolicy

__all__ = ["CodecError", "decode_command", "decode_event", "encode"]


class CodecError(ValueError):
    """A message from another node that this node cannot read (another version, or a bug)."""


_EVENTS: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(ev.Event)}
_COMMANDS: dict[str, type] = {cls.__name__: cls for cls in (ev.OfferContact, ev.WithdrawOffer, ev.NotifyManager)}


def encode(message: ev.Event | ev.Command) -> dict[str, Any]:
    """`{"type": <class name>, <field>: <value>...}`; a reloaded policy travels as its name only."""
    if isinstance(message, ev.PolicyReloaded):
        return {"type": "PolicyReloaded", "version": message.policy.version}
    if isinstance(message, ev.OfferContact):
        # the panels read only the summary; the candidates can run to many kilobytes
        slim = dataclasses.replace(message.decision, candidates=(), filtered={}, filtered_counts={})
        message = dataclasses.replace(message, decision=slim)
    out = _encode(message)
    assert isinstance(out, dict)
    return {"type": type(message).__name__, **out}


def decode_event(data: Mapping[str, Any], policy: Callable[[], RoutingPolicy] | None = None) -> ev.Event:
    """The event `encode` wrote. `policy()` gives the policy a `PolicyReloaded` stands for."""
    name = data.get("type")
    if name == "PolicyReloaded":
        if policy is None:
            raise CodecError("a policy reload arrived, but this node cannot reload its policy")
        return ev.PolicyReloaded(policy())
    cls = _EVENTS.get(str(name))
    if cls is None:
        raise CodecError(f"unknown event type {name!r}")
    return typing.cast(ev.Event, _decode(cls, {k: v for k, v in data.items() if k != "type"}))


def decode_command(data: Mapping[str, Any]) -> ev.Command:
    cls = _COMMANDS.get(str(data.get("type")))
    if cls is None:
        raise CodecError(f"unknown command type {data.get('type')!r}")
    return typing.cast(ev.Command, _decode(cls, {k: v for k, v in data.items() if k != "type"}))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted(_encode(v) for v in value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(_encode(k)): _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise CodecError(f"cannot encode a {type(value).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1:
            raise CodecError(f"ambiguous union {tp}")
        return _decode(kinds[0], data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, Mapping):
            raise CodecError(f"{tp.__name__}: expected an object")
        hints = _hints(tp)
        fields = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: _decode(hints[k], v) for k, v in data.items() if k in fields})
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin is frozenset:
        return frozenset(_decode(args[0], v) for v in data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        return [_decode(args[0], v) for v in data]
    if origin in (dict, Mapping):
        key, val = args if args else (Any, Any)
        return {_decode(key, k): _decode(val, v) for k, v in data.items()}
    if tp in (str, int, bool):
        if not isinstance(data, tp):
            raise CodecError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    if tp is float:
        if not isinstance(data, int | float):
            raise CodecError(f"expected a number, got {type(data).__name__}")
        return float(data)
    raise CodecError(f"cannot decode type {tp}")
