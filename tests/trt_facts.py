"""TensorRT's Python API as the real bindings register it (``tests/api``), and what the tests make of it.

``tests/api/tensorrt-<major>.<minor>.json`` were extracted from the real bindings wheels by
``scripts/tensorrt_api.py``: every class, its bases, each member's kind and the type it returns.
From those facts this module makes, per TensorRT version:

- :func:`stub_source`: a type stub (``tensorrt/__init__.pyi``) for mypy, so the code's every
  attribute and method, followed through the types they return, is checked against that version;
- :func:`double`: a stand-in ``tensorrt`` module that has exactly the facts' classes and members
  (anything else raises ``AttributeError``, a constructor the class lacks ``TypeError``) and
  records each call, for running the builder's calls on a machine without TensorRT.

Neither can invent an API: both are generated from the facts and nothing else.
"""

from __future__ import annotations

import json
import types
from functools import cache
from pathlib import Path
from typing import Any

API = Path(__file__).parent / "api"
VERSIONS = tuple(sorted(path.stem.removeprefix("tensorrt-") for path in API.glob("tensorrt-*.json")))
BUILTINS = {"bool": True, "int": 0, "float": 0.0, "str": "", "bytes": b"", "None": None, "Any": None}


@cache
def facts(version: str) -> dict[str, Any]:
    """The facts of TensorRT ``version`` (``"10.16"``, ``"11.4"``)."""
    return json.loads((API / f"tensorrt-{version}.json").read_text())


def members(version: str, qualname: str) -> dict[str, str]:
    """Every member of class ``qualname``, its own and its bases', as ``{name: "kind type[ = value]"}``."""
    entry = facts(version)["classes"][qualname]
    found: dict[str, str] = {}
    for base in entry["bases"]:
        found.update(members(version, base))
    found.update(entry["members"])
    return found


def _parse(kind: str) -> tuple[str, str, str | None]:
    """``"attribute X = 1"`` → ``("attribute", "X", "1")``; ``"property int settable"`` → ``("property", "int", "settable")``."""
    head, _, value = kind.partition(" = ")
    parts = head.split()
    return parts[0], parts[1], value or (parts[2] if len(parts) > 2 else None)


def _flat(name: str) -> str:
    return name.replace(".", "_")


def stub_source(version: str) -> str:
    """``tensorrt/__init__.pyi`` for ``version``: every class and member, typed by what it returns.

    Each member line ignores type errors within the stub itself (the bindings override a base's
    ``type`` property with another type); the code checked against it gets no such leeway."""
    known = facts(version)["classes"]

    def annotation(type_name: str) -> str:
        return _flat(type_name) if type_name in known else type_name

    lines = ["from typing import Any, ClassVar", ""]
    for qualname, entry in known.items():
        bases = ", ".join(_flat(base) for base in entry["bases"])
        lines.append(f"class {_flat(qualname)}({bases}):")
        if entry["buffer"]:
            lines.append("    def __buffer__(self, flags: int) -> memoryview: ...")
        for name, kind in entry["members"].items():
            what, type_name, extra = _parse(kind)
            returns = "None" if name == "__init__" else annotation(type_name)
            if what == "method":
                line = f"    def {name}(self, *args: Any, **kwargs: Any) -> {returns}: ..."
            elif what == "staticmethod":
                line = f"    @staticmethod\n    def {name}(*args: Any, **kwargs: Any) -> {returns}: ..."
            elif what == "property" and extra == "settable":
                line = f"    {name}: {returns}"
            elif what == "property":
                line = f"    @property\n    def {name}(self) -> {returns}: ..."
            elif what == "class":
                line = f"    {name}: ClassVar[type[{returns}]]"
            else:
                line = f"    {name}: ClassVar[{returns}]"
            lines.append(line + "  # type: ignore")
        lines.append("    ...")
    for name, kind in facts(version)["module"].items():
        what, type_name, _ = _parse(kind)
        if what == "class" and name != type_name:
            lines.append(f"{name} = {_flat(type_name)}")
        elif what == "function":
            lines.append(f"def {name}(*args: Any, **kwargs: Any) -> {annotation(type_name)}: ...")
        elif what == "attribute":
            lines.append(f"{name}: {annotation(type_name)}")
    return "\n".join(lines) + "\n"


class TensorRtDouble(types.ModuleType):
    """A ``tensorrt`` module with exactly the classes and members of one version's facts.

    Methods return an instance of the class they are declared to return (builtins: ``True``,
    ``0``, ``""``, ``b""``; ``None`` for ``Any``); enum members carry their real values, so
    ``int(flag)`` is what the real module gives. ``calls`` records ``("Class.method", args,
    kwargs)`` for every call and property write, constructors included.
    """

    def __init__(self, version: str) -> None:
        super().__init__("tensorrt")
        self.version = version
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.classes: dict[str, type] = {}
        for qualname in facts(version)["classes"]:
            self._class(qualname)
        for qualname, cls in self.classes.items():
            for name, kind in members(version, qualname).items():
                what, type_name, value = _parse(kind)
                if what == "class":
                    setattr(cls, name, self.classes[type_name])
                elif what == "attribute" and not name.startswith("__"):
                    setattr(cls, name, self._enum_member(type_name, name, value))
        for name, kind in facts(version)["module"].items():
            what, type_name, _ = _parse(kind)
            if what == "class":
                setattr(self, name, self.classes[type_name])
            elif what == "function":
                setattr(self, name, self._recorder(name, type_name))
        self.__version__ = facts(version)["version"]

    def _default(self, type_name: str) -> Any:
        if type_name in self.classes:
            cls = self.classes[type_name]
            return cls.__new__(cls)
        return BUILTINS.get(type_name)

    def _enum_member(self, type_name: str, name: str, value: str | None) -> Any:
        if value is None and type_name in self.classes:  # an alias of a member declared on its enum
            _, _, value = _parse(members(self.version, type_name).get(name, "attribute Any"))
        member = self._default(type_name)
        if member is not None and value is not None:
            object.__setattr__(member, "_value", int(value))
        return member

    def _recorder(self, qualified: str, returns: str, method: bool = False) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((qualified, args[1:] if method else args, kwargs))  # a method's args without self
            return self._default(returns)

        return call

    def _class(self, qualname: str) -> type:
        known = members(self.version, qualname)
        namespace: dict[str, Any] = {"_facts": known, "_qualname": qualname, "_double": self}
        for name, kind in known.items():
            what, type_name, extra = _parse(kind)
            if what in ("method", "staticmethod") and name not in ("__init__", "__int__", "__index__", "__eq__", "__hash__"):
                recorder = self._recorder(f"{qualname}.{name}", type_name, method=what == "method")
                namespace[name] = staticmethod(recorder) if what == "staticmethod" else recorder
            elif what == "property":
                namespace[name] = property(lambda _self, t=type_name: self._default(t))
        if "__init__" in known:
            double = self

            def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:
                double.calls.append((qualname, args, kwargs))

            namespace["__init__"] = __init__
        if "__int__" in known:
            namespace["__int__"] = namespace["__index__"] = lambda instance: instance._value
            namespace["__eq__"] = lambda instance, other: int(instance) == int(other)
            namespace["__hash__"] = lambda instance: hash(instance._value)
        if facts(self.version)["classes"][qualname]["buffer"]:
            namespace["__bytes__"] = lambda instance: b""  # the real class has the buffer protocol
        cls = type(_flat(qualname), (_Strict,), namespace)
        self.classes[qualname] = cls
        return cls

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"module 'tensorrt' has no attribute {name!r} in TensorRT {self.version}")


class _Strict:
    """Base of the double's classes: only the facts' members exist; writes only to settable properties."""

    _facts: dict[str, str]
    _qualname: str
    _double: TensorRtDouble
    _value = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{self._qualname}: no constructor in TensorRT {self._double.version}")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{self._qualname!r} has no attribute {name!r} in TensorRT {self._double.version}")

    def __setattr__(self, name: str, value: Any) -> None:
        if not self._facts.get(name, "").endswith("settable"):
            raise AttributeError(f"{self._qualname}.{name} cannot be set in TensorRT {self._double.version}")
        self._double.calls.append((f"{self._qualname}.{name}=", (value,), {}))
