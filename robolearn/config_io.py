"""Strict dataclass <-> dict conversion for configs, recipes (TOML with `base` includes) and
`key=value` overrides.

Unknown keys and wrong types raise `UserError` naming the dotted key, so a typo in a
recipe, an override or a checkpoint's config.json is one clear line, never a traceback.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
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


# Recipes that moved: "<folder>/<old name>" -> new name in the same folder. Reading an old name
# that no longer exists is a one-line error naming the new one (also for `robolearn collect`).
RENAMED_RECIPES: dict[str, str] = {
    "datasets/lift_ph.toml": "lift_image.toml",  # stores follow datasets/<task>[_image].toml -> datasets/stores/
}


def renamed_recipe_error(path: Path) -> UserError | None:
    """The error for a missing recipe ``path`` that was renamed (RENAMED_RECIPES), else None."""
    new = RENAMED_RECIPES.get(f"{path.parent.name}/{path.name}")
    return UserError(f"{path}: renamed to {path.parent / new}") if new else None


def read_recipe_file(path: Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One recipe TOML as a dict, its ``base = "other.toml"`` (relative to ``path``) resolved: the
    base's own data (recursively) deep-merged with this file's, this file winning. A missing file,
    bad TOML, a missing base or a cycle is a one-line UserError naming the file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise (renamed_recipe_error(path) or UserError(f"{path}: recipe not found")) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc})") from None
    if "base" not in data:
        return data
    ref = data.pop("base")
    if not isinstance(ref, str) or not ref:
        raise UserError(f"{path}: 'base' expected the path of another recipe (relative to this file), got {ref!r}")
    including = (*_including, path.resolve())
    base_path = path.parent / ref
    if base_path.resolve() in including:
        chain = " -> ".join(p.name for p in (*including, base_path.resolve()))
        raise UserError(f"{path}: base {ref!r} makes a cycle ({chain})")
    if not base_path.is_file():
        raise UserError(f"{path}: base {ref!r} not found (looked for {base_path})")
    return deep_merge(read_recipe_file(base_path, including), data)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``top`` (new dicts): tables present in both merge recursively, any
    other value in ``top`` (lists too) replaces the base's."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
