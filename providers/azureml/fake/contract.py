"""Checks Azure ML REST request bodies against Microsoft's own generated models.

The models are those of PyPI `azure-ai-ml==1.35.2`, module
`azure.ai.ml._restclient.arm_ml_service.models`, whose client targets api-version 2025-12-01.
Every model there is a class such as

    class CommandJob(JobBaseProperties, discriminator="Command"):
        code_id: Optional[str] = rest_field(name="codeId", visibility=["read", "create"])
        command: str = rest_field(visibility=["read", "create"])
        job_type: Literal[JobType.COMMAND] = rest_discriminator(name="jobType", ...)

and the checker reads exactly that, generically, from the classes:

- the wire name of a field is its `rest_field(name=...)` (else the attribute name);
- a field is required when its type annotation is not `Optional[...]` (the generator writes
  `Required.` in the docstring of exactly those);
- a field is read-only when its visibility is `["read"]` (what `as_dict(exclude_readonly=True)`
  of the package drops); a client that sends one is flagged;
- a class with a `__mapping__` is polymorphic: the `rest_discriminator` field declared on it
  (`jobType`, `endpointComputeType`, `samplingAlgorithmType`, `jobInputType`, `dataType`, ...)
  picks the subclass from `__mapping__`, as the package's own `_deserialize` does, and nested
  discriminators are followed the same way;
- enums (`Union[str, SomeEnum]`) accept their known values case-insensitively (the enums use
  `CaseInsensitiveEnumMeta`, and ARM compares them so); discriminator values must match exactly,
  since they select a type;
- `datetime.timedelta` is an ISO 8601 duration string, `datetime.datetime` an RFC 3339 string.

`check(model, body)` returns violations, each a `Violation(path, message)` with a JSON path
such as `$.properties.trial.command`. `route(method, path)` maps an ARM request to its
top-level model (the table `ROUTES`).
"""

from __future__ import annotations

import datetime
import difflib
import enum
import re
import sys
import types
import typing
from dataclasses import dataclass

from azure.ai.ml._restclient.arm_ml_service import models as MODELS
from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model, _RestField

__all__ = ["Violation", "check", "check_route", "route", "model", "ROUTES"]


@dataclass(frozen=True)
class Violation:
    """One way a body breaks the contract: where (a JSON path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Field:
    attr: str
    wire: str
    hint: typing.Any
    required: bool
    readonly: bool
    discriminator: bool


def model(name: str) -> type:
    """The model class called `name` (an AttributeError names a class the package lacks)."""
    cls = getattr(MODELS, name)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"{name} is not a generated model")
    return cls


# --- reading the generated classes -------------------------------------------------------------

_FIELDS: dict[type, dict[str, Field]] = {}


def _namespace(cls: type) -> dict:
    # The annotations are strings such as "_models.JobInput"; `_models` is imported by the
    # generated module only under TYPE_CHECKING, so it is supplied here.
    ns = dict(vars(sys.modules[cls.__module__]))
    ns["_models"] = MODELS
    return ns


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def fields(cls: type) -> dict[str, Field]:
    """The fields of a model class by wire name, inherited ones included."""
    found = _FIELDS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls, globalns=_namespace(cls))
    found = {}
    # Base classes first, so a subclass's redeclaration (a discriminator narrowed to a Literal)
    # wins, as in the package's own Model.__new__.
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if attr.startswith("_") or not isinstance(value, _RestField):
                continue
            wire = value._rest_name_input or attr
            hint = hints.get(attr, typing.Any)
            for stale in [w for w, f in found.items() if f.attr == attr]:
                del found[stale]
            found[wire] = Field(
                attr=attr,
                wire=wire,
                hint=hint,
                required=not _is_optional(hint) and hint is not typing.Any,
                readonly=value._visibility == ["read"],
                discriminator=bool(value._is_discriminator),
            )
    _FIELDS[cls] = found
    return found


def _own_discriminator(cls: type, used: list[str]) -> str | None:
    """The discriminator declared on `cls` itself that is not yet used (the package's rule)."""
    for value in vars(cls).values():
        if isinstance(value, _RestField) and value._is_discriminator:
            wire = value._rest_name
            if wire not in used:
                return wire
    return None


def _resolve(cls: type, data: dict, path: str, out: list[Violation]) -> type | None:
    """The concrete class a body of declared type `cls` stands for, following discriminators."""
    used: list[str] = []
    while "__mapping__" in dir(cls):
        wire = _own_discriminator(cls, used)
        if wire is None:
            return cls
        used.append(wire)
        mapping: dict = cls.__mapping__
        known = sorted(k for k, sub in mapping.items() if issubclass(sub, cls) and sub is not cls)
        value = data.get(wire)
        if value is None:
            out.append(Violation(f"{path}.{wire}", f"missing discriminator of {cls.__name__}; one of: {', '.join(known)}"))
            return None
        sub = mapping.get(value) if isinstance(value, str) else None
        if sub is None or not issubclass(sub, cls):
            hint = ""
            if isinstance(value, str):
                exact = [k for k in known if k.lower() == value.lower()]
                if exact:
                    hint = f" (discriminators are case-sensitive: {exact[0]!r})"
            out.append(
                Violation(f"{path}.{wire}", f"unknown {wire} {value!r} for {cls.__name__}{hint}; one of: {', '.join(known)}")
            )
            return None
        if sub is cls:
            return cls
        cls = sub
    return cls


# --- checking values ---------------------------------------------------------------------------

_DURATION = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+(\.\d+)?D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _enum_values(e: type[enum.Enum]) -> list[str]:
    return [m.value for m in e]


def _check_value(hint, value, path: str, out: list[Violation]) -> None:
    if hint is typing.Any:
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if value is None:
            if len(members) != len(args):
                return
            out.append(Violation(path, "must not be null"))
            return
        enums = [a for a in members if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and all(a is str or a in enums for a in members):
            if not isinstance(value, str):
                out.append(Violation(path, f"expected a string (enum {enums[0].__name__}), got {_kind(value)}"))
                return
            known = [v for e in enums for v in _enum_values(e)]
            if value.lower() not in {k.lower() for k in known}:
                out.append(Violation(path, f"unknown {enums[0].__name__} value {value!r}; known: {', '.join(known)}"))
            return
        if len(members) == 1:
            _check_value(members[0], value, path, out)
            return
        # A real union: the first member that takes the value without complaint wins.
        attempts = []
        for member in members:
            trial: list[Violation] = []
            _check_value(member, value, path, trial)
            if not trial:
                return
            attempts.append(trial)
        out.extend(min(attempts, key=len))
        return
    if value is None:
        out.append(Violation(path, "must not be null"))
        return
    if origin is typing.Literal:
        allowed = [a.value if isinstance(a, enum.Enum) else a for a in args]
        if value not in allowed:
            out.append(Violation(path, f"must be {' or '.join(repr(a) for a in allowed)}, got {value!r}"))
        return
    if origin is list:
        if not isinstance(value, list):
            out.append(Violation(path, f"expected an array, got {_kind(value)}"))
            return
        (item,) = args or (typing.Any,)
        for i, v in enumerate(value):
            _check_value(item, v, f"{path}[{i}]", out)
        return
    if origin is dict:
        if not isinstance(value, dict):
            out.append(Violation(path, f"expected an object, got {_kind(value)}"))
            return
        item = args[1] if len(args) == 2 else typing.Any
        for k, v in value.items():
            _check_value(item, v, f"{path}[{k!r}]", out)
        return
    if hint is str:
        if not isinstance(value, str):
            out.append(Violation(path, f"expected a string, got {_kind(value)}"))
        return
    if hint is bool:
        if not isinstance(value, bool):
            out.append(Violation(path, f"expected a boolean, got {_kind(value)}"))
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                out.append(Violation(path, f"expected an integer, got {_kind(value)} {value!r}"))
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(Violation(path, f"expected a number, got {_kind(value)}"))
        return
    if hint is datetime.timedelta:
        if not isinstance(value, str) or not _DURATION.match(value):
            out.append(Violation(path, f"expected an ISO 8601 duration such as 'PT2H', got {value!r}"))
        return
    if hint is datetime.datetime:
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            out.append(Violation(path, f"expected an RFC 3339 date-time, got {value!r}"))
        return
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if not isinstance(value, str) or value.lower() not in {k.lower() for k in _enum_values(hint)}:
            out.append(Violation(path, f"unknown {hint.__name__} value {value!r}; known: {', '.join(_enum_values(hint))}"))
        return
    if isinstance(hint, type) and issubclass(hint, Model):
        _check_model(hint, value, path, out)
        return
    raise TypeError(f"{path}: the checker does not know the type {hint!r}")


def _check_model(cls: type, value, path: str, out: list[Violation]) -> None:
    if not isinstance(value, dict):
        out.append(Violation(path, f"expected an object ({cls.__name__}), got {_kind(value)}"))
        return
    concrete = _resolve(cls, value, path, out)
    if concrete is None:
        return
    known = fields(concrete)
    by_attr = {f.attr: f for f in known.values()}
    for key, v in value.items():
        field = known.get(key)
        where = f"{path}.{key}"
        if field is None:
            if key in by_attr:
                hint = f"; the wire name is {by_attr[key].wire!r} ({key!r} is the Python attribute)"
            else:
                close = difflib.get_close_matches(key, list(known), n=1)
                close = close or [w for w in known if w.lower() == key.lower()]
                hint = f"; did you mean {close[0]!r}?" if close else ""
            out.append(Violation(where, f"unknown field of {concrete.__name__}{hint}"))
            continue
        if field.readonly:
            out.append(Violation(where, f"read-only field of {concrete.__name__}: the service sets it, a client must not send it"))
            continue
        if field.discriminator:
            continue  # checked by _resolve
        _check_value(field.hint, v, where, out)
    for field in known.values():
        if field.required and not field.readonly and field.wire not in value:
            out.append(Violation(f"{path}.{field.wire}", f"missing required field of {concrete.__name__}"))


def check(cls: type | str, body, path: str = "$") -> list[Violation]:
    """Every way `body` (parsed JSON) breaks the model `cls`; empty when it conforms."""
    if isinstance(cls, str):
        cls = model(cls)
    out: list[Violation] = []
    _check_model(cls, body, path, out)
    return out


# --- which model a request carries -------------------------------------------------------------

_NAME = r"[^/]+"
# (method, path under the workspace, the model of its body). The path is what follows
# /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}.
ROUTES: list[tuple[str, str, str]] = [
    ("PUT", rf"/data/{_NAME}", "DataContainer"),
    ("PUT", rf"/data/{_NAME}/versions/{_NAME}", "DataVersionBase"),
    ("PUT", rf"/codes/{_NAME}", "CodeContainer"),
    ("PUT", rf"/codes/{_NAME}/versions/{_NAME}", "CodeVersion"),
    ("POST", rf"/codes/{_NAME}/versions/{_NAME}/startPendingUpload", "PendingUploadRequestDto"),
    ("PUT", rf"/environments/{_NAME}", "EnvironmentContainer"),
    ("PUT", rf"/environments/{_NAME}/versions/{_NAME}", "EnvironmentVersion"),
    ("PUT", rf"/jobs/{_NAME}", "JobBase"),
    ("PUT", rf"/models/{_NAME}", "ModelContainer"),
    ("PUT", rf"/models/{_NAME}/versions/{_NAME}", "ModelVersion"),
    ("PUT", rf"/onlineEndpoints/{_NAME}", "OnlineEndpoint"),
    ("PATCH", rf"/onlineEndpoints/{_NAME}", "PartialMinimalTrackedResourceWithIdentity"),
    ("PUT", rf"/onlineEndpoints/{_NAME}/deployments/{_NAME}", "OnlineDeployment"),
    ("PATCH", rf"/onlineEndpoints/{_NAME}/deployments/{_NAME}", "PartialMinimalTrackedResourceWithSku"),
    ("POST", rf"/onlineEndpoints/{_NAME}/regenerateKeys", "RegenerateEndpointKeysRequest"),
]

_COMPILED = [(m, re.compile(p + "$"), name) for m, p, name in ROUTES]


def route(method: str, path: str) -> str | None:
    """The model name of the body of `method path` (path under the workspace), if it has one."""
    for m, pattern, name in _COMPILED:
        if m == method and pattern.match(path):
            return name
    return None


def check_route(method: str, path: str, body) -> list[Violation] | None:
    """The violations of a request's body, or None when the request carries no model."""
    name = route(method, path)
    if name is None:
        return None
    return check(name, body)


def _selfcheck() -> None:
    # Every routed model exists in the package and every annotation is understood: a newer
    # azure-ai-ml that renames a class fails here, not in the middle of a test.
    for _, _, name in ROUTES:
        fields(model(name))


_selfcheck()
