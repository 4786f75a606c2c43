"""params.yaml sections -> frozen dataclasses, validated before any work starts.

Every field of a config dataclass is required (no defaults): the params file is the
single source of truth, so a key missing there is an error, not a silent default.
Unknown keys, missing keys and values of the wrong type raise ``ConfigError`` naming
the full dotted key, e.g. ``dropout_mnist.train.lr: expected float, got str 'fast'``.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class FrozenDict(dict):
    """A read-only dict for mapping-valued params (variants, models): picklable, so a config can
    travel to the worker processes that train seeds side by side, unlike ``MappingProxyType``."""

    def _readonly(self, *args, **kwargs):
        raise TypeError("config mappings are read-only; change params.yaml instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # frozen dataclasses holding one stay hashable
        return hash(tuple(sorted(self.items(), key=lambda kv: str(kv[0]))))


class ConfigError(ValueError):
    """A params.yaml section does not match its dataclass."""


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def load_section(cls: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Read ``section`` of the params file into ``cls`` (strictly)."""
    params = load_params(path)
    if section not in params:
        raise ConfigError(f"{path}: section '{section}' is missing; add it (see the README)")
    return from_dict(cls, params[section], section)


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a plain mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
    missing = sorted(fields - set(data))
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: missing key (required by {cls.__name__})")
    values = {name: _convert(hints[name], data[name], f"{where}.{name}") for name in fields}
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:  # dataclass-specific range checks, e.g. 0 <= p < 1
        try:
            check()
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return FrozenDict({k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {tp}")  # a bug in a dataclass, not in params


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested, with tuples/mappings) -> plain YAML/JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


__all__ = ["ConfigError", "FrozenDict", "load_params", "load_section", "from_dict", "to_dict"]
