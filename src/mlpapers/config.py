"""params.yaml sections -> frozen dataclasses, validated before any work starts.

Every field of a config dataclass is required (no defaults): the params file is the
single source of truth, so a key missing there is an error, not a silent default.
Unknown keys, missing keys and values of the wrong type raise ``ConfigError`` naming
the full dotted key, e.g. ``dropout_mnist.train.lr: expected float, got str 'fast'``.

The loader is strict where YAML is lax: a key written twice (YAML keeps the last one
silently; DVC refuses the file), anchors, aliases and ``<<`` merge keys (aliases can
blow up memory and hide which value a stage really reads) and non-finite floats
(``.nan``, ``.inf``) are refused, naming the file, line and column or the dotted key.
Generic rules every section gets: a ``seeds`` list must be non-empty, unique and in
[0, 2**32 - 1]. Range checks live in each dataclass's ``validate()``; raise
``ParamError(field, message)`` there to have the error name the full dotted key.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
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


class ParamError(ValueError):
    """Raised by a ``validate()`` method for one field: ``ParamError("lr", "got inf; allowed: > 0")``
    becomes ``ConfigError("<section>.train.lr: got inf; allowed: > 0")``."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def check_range(obj: Any, key: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ``ParamError`` unless ``getattr(obj, key)`` is finite and within the given bounds."""
    v = getattr(obj, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        allowed = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ParamError(key, f"got {v!r}; allowed: {allowed}")


SEED_MAX = 2**32 - 1  # numpy's legacy seeding limit


def _mark(node_or_mark: Any) -> str:
    m = getattr(node_or_mark, "start_mark", node_or_mark)
    return f"{m.name}:{m.line + 1}:{m.column + 1}" if m is not None else "?"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, anchors, aliases and merge keys."""

    def compose_node(self, parent, index):  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"{_mark(event)}: YAML anchors and aliases (&name, *name) are not allowed in "
                              "params files; write the values out in full")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigError(f"{_mark(key_node)}: YAML merge keys (<<) are not allowed in params files; "
                                      "write the values out in full")
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise ConfigError(f"{_mark(key_node)}: key {key!r} is written twice in the same mapping "
                                          f"(first at line {seen[key].start_mark.line + 1}); keep one")
                    seen[key] = key_node
                except TypeError:  # unhashable key: let PyYAML report it
                    pass
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Parse ``path`` strictly; every failure is a one-line ``ConfigError`` naming file, line, column."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError(f"{_mark(e.problem_mark)}: YAML syntax error in this {what}: {problem}; fix that line") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: cannot parse this {what}: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    params = load_yaml(path, "params file")
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
    if "seeds" in values:
        _check_seeds(values["seeds"], f"{where}.seeds")
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:  # dataclass-specific range checks, e.g. 0 <= p < 1
        try:
            check()
        except ConfigError:
            raise
        except ParamError as e:
            raise ConfigError(f"{where}.{e.key}: {e.message}") from None
        except (ValueError, TypeError, ZeroDivisionError) as e:
            raise ConfigError(_name_field(str(e), where, fields)) from None
    return obj


def _name_field(message: str, where: str, fields: set[str]) -> str:
    """'threads must be in [1, 256], got 0' from section 'compute' -> 'compute.threads must be ...':
    a validate() message that starts with one of its fields names the full dotted key."""
    head = message.split(" ", 1)[0].rstrip(":,")
    if head in fields:
        return f"{where}.{message}"
    return f"{where}: {message}"


def _check_seeds(seeds: Any, where: str) -> None:
    """Every seed list: non-empty (no 'n: 0'), unique (no std of 0 from copies), in [0, 2**32-1]."""
    if not isinstance(seeds, tuple):
        return
    if not seeds:
        raise ConfigError(f"{where}: got an empty list; allowed: one or more distinct seeds in [0, {SEED_MAX}]")
    bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= SEED_MAX]
    if bad:
        raise ConfigError(f"{where}: got {bad[0]!r}; allowed: whole numbers in [0, {SEED_MAX}]")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"{where}: seed {dup[0]} is repeated in {list(seeds)}; allowed: distinct seeds "
                          "(copies would fake agreement between runs)")


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
        _check_finite(value, where)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {type(value).__name__} {value!r}")
        _check_finite(value, where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {type(value).__name__} {value!r}")
        if not -(2**63) <= value < 2**63:
            raise ConfigError(f"{where}: got {value}; allowed: a 64-bit integer")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {tp}")  # a bug in a dataclass, not in params


def _check_finite(value: Any, where: str) -> None:
    """Refuse NaN and infinities anywhere (``max_norm: .nan`` must not silently mean 'off')."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: got {value!r}; allowed: a finite number (.nan and .inf are refused)")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested, with tuples/mappings) -> plain YAML/JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


__all__ = ["ConfigError", "ParamError", "FrozenDict", "StrictLoader", "check_range", "load_yaml", "load_params",
           "load_section", "from_dict", "to_dict"]
