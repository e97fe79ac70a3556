"""Strict dataclass <-> dict conversion for configs, recipes and `key=value` overrides.

Unknown keys and wrong types raise `UserError` naming the dotted key, so a typo in a
recipe, an override or a checkpoint's config.json is one clear line, never a traceback.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from typing import Any

from robolearn.errors import UserError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise UserError naming ``key``."""
    origin = typing.get_origin(tp)
    bad = UserError(f"{where}: '{key}' expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key, where)
            except UserError:
                pass
        raise bad
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return from_dict(tp, value, where, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return [_check(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        args = typing.get_args(tp)
        val_tp = args[1] if args else Any
        return {str(k): _check(v, val_tp, f"{key}.{k}", where) for k, v in value.items()}
    raise TypeError(f"config field {key}: unsupported annotation {tp!r}")


def from_dict(cls: type, data: dict, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; missing keys keep their defaults."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: '{prefix.rstrip('.') or '<root>'}' expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise UserError(f"{where}: unknown key '{prefix}{key}' (known: {', '.join(sorted(names))})")
        kwargs[key] = _check(value, hints[key], f"{prefix}{key}", where)
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def parse_value(text: str) -> Any:
    """`16` -> 16, `3e-4` -> 0.0003, `true` -> True, `["a","b"]` -> list; anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str], where: str = "override") -> dict:
    """Set dotted ``key=value`` pairs into a nested dict (a copy). Type checks happen in from_dict."""
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"{where}: expected key=value, got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"{where}: bad key {key!r}")
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise UserError(f"{where}: '{key}': '{p}' is not a table")
            node = child
        node[parts[-1]] = parse_value(text.strip())
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
