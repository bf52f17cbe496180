"""Typed backend state: a dataclass per backend, checked field by field when it is loaded.

A backend's record (what it started, where, how to reach it) used to be an untyped
dict; a state file with the wrong types (``"processes": 5``, an empty server list, a
gcp record without its project) then failed deep inside ``down`` with a traceback.
Now each backend declares its record as a dataclass deriving :class:`Record`, and
:meth:`Record.from_json` builds it from the JSON ``labkit.state.load`` read, checking
every field against its annotation (``str``, ``int``, ``float``, ``bool``, ``None``
unions, ``list[X]``, ``dict[str, X]``, ``tuple``, nested dataclasses such as
:class:`~labkit.processes.ProcessRecord` or :class:`~labkit.backends.base.ClusterSpec`).
Anything wrong is one :class:`~labkit.errors.StateError` naming the file and the field.
:meth:`Record.to_json` is the inverse; ``from_json(to_json(r)) == r``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from labkit.errors import LabkitError, StateError

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null",
          list: "a list", dict: "an object", tuple: "a list"}


class _Bad(Exception):
    """A field's value does not fit its annotation (turned into one StateError line)."""


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is not None:
        return _NAMES.get(origin, str(origin))
    if dataclasses.is_dataclass(tp):
        return f"an object ({tp.__name__})"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value, tp, where: str):
    """``value`` (from JSON) as type ``tp``, or :class:`_Bad` naming ``where``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise _Bad(f"{where} must be one of {', '.join(map(repr, typing.get_args(tp)))}, not {value!r:.60}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own message says what is wrong inside
            return _convert(value, others[0], where)
        for arg in args:
            try:
                return _convert(value, arg, where)
            except _Bad:
                continue
        raise _Bad(f"{where} must be {_describe(tp)}, not {value!r:.60}")
    if origin is list:
        if not isinstance(value, list):
            raise _Bad(f"{where} must be a list, not {value!r:.60}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be an object, not {value!r:.60}")
        _, item = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"{where} must be a list, not {value!r:.60}")
        return tuple(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be {_describe(tp)}, not {value!r:.60}")
        return _build(tp, value, where)
    if tp is type(None):
        if value is not None:
            raise _Bad(f"{where} must be null")
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"{where} must be a number, not {value!r:.60}")
        return float(value) if isinstance(value, float) else value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"{where} must be an integer, not {value!r:.60}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise _Bad(f"{where} must be {_NAMES[tp]}, not {value!r:.60}")
        return value
    raise TypeError(f"records cannot hold {tp!r} ({where})")


_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls, data: dict, where: str):
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown and getattr(cls, "strict_keys", True):
        raise _Bad(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        label = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Bad(f"key missing: {label}")
            continue
        kwargs[name] = _convert(data[name], hints[name], label)
    try:
        return cls(**kwargs)
    except LabkitError as e:  # a ClusterSpec, HostSpec... refusing its values
        raise _Bad(f"{where or cls.__name__}: {e}") from None
    except (TypeError, ValueError) as e:
        raise _Bad(f"{where or cls.__name__}: {e}") from None


def _plain(value):
    """``value`` as JSON-ready data (dataclasses as dicts, tuples as lists), deep-copied."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass
class Record:
    """Base of every backend's record: built from JSON with every field's type checked."""

    strict_keys: typing.ClassVar[bool] = False  # older files may carry keys since dropped

    def check(self) -> None:
        """Checks beyond the types (e.g. a non-empty server list); raise ``ValueError(one line)``."""

    def check_folder(self, folder) -> None:
        """Checks of a record read from ``folder/<name>.json``: the paths it names must be that
        folder's own (a planted file must not point ``down`` at another folder); raise StateError."""

    @classmethod
    def from_json(cls, data, path="state") -> Record:
        """The record ``data`` (parsed JSON) describes; :class:`StateError` naming ``path`` and the field."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise StateError(path, "not a JSON object")
        try:
            record = _build(cls, data, "")
            record.check()
        except (_Bad, ValueError, LabkitError) as e:
            raise StateError(path, str(e)) from None
        return record

    def to_json(self) -> dict:
        """JSON-ready data (a deep copy): what ``labkit.state.save`` writes."""
        return _plain(self)


__all__ = ["Record"]
