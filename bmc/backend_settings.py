"""A backend's settings schema, read off its constructor (backends/base.py: the keyword
arguments ARE the `backend:` settings and their type hints the schema).

Only a config file needs this (it imports pydantic): `serve` without `--config` gives no
settings. Problems come back as (setting path, message) pairs for the config loader to place
on a line of the file.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import typing
from typing import Any

from backends import Backend, BackendError, backend_class

#: set by the emulator, never by the config
EMULATOR_ARGUMENTS = frozenset({"self", "node_name"})
#: a constructor's message that starts with one of its settings (`command: not found`) names it
_NAMED_SETTING = re.compile(r"(?P<name>[A-Za-z_]\w*): (?P<message>.+)", re.DOTALL)

SettingProblem = tuple[tuple[str | int, ...], str]


def setting_names(cls: type[Backend]) -> list[str]:
    """The settings `cls` takes, in constructor order."""
    return [name for name, p in _parameters(cls).items() if p.kind not in _VARIADIC]


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def required_settings(cls: type[Backend]) -> list[str]:
    """The settings `cls` cannot do without (constructor arguments without a default)."""
    return [name for name, p in _parameters(cls).items()
            if p.kind not in _VARIADIC and p.default is inspect.Parameter.empty]


def _parameters(cls: type[Backend]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {name: p for name, p in params.items() if name not in EMULATOR_ARGUMENTS}


@functools.cache
def settings_model(cls: type[Backend]) -> Any:
    """A pydantic model of `cls`'s settings: one field per constructor argument, typed by its
    hint (Any where it has none), required where it has no default; other keys are refused
    unless the constructor takes **kwargs."""
    from pydantic import ConfigDict, create_model

    params = _parameters(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a hint that cannot be resolved: the constructor checks by itself
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in params.items():
        if param.kind in _VARIADIC:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # strict: YAML's `command: 5` or `power_on: "yes"` is refused, not coerced
    config = ConfigDict(extra="allow" if open_ended else "forbid", strict=True,
                        arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Settings", __config__=config, **fields)


def check_settings(kind: str, settings: dict[str, Any]) -> list[SettingProblem]:
    """Problems of `settings` against backend `kind`'s schema (the type must be known)."""
    from pydantic import ValidationError

    from bmc.config_file import message

    try:
        cls = backend_class(kind)
    except BackendError as exc:
        return [((), str(exc))]
    try:
        settings_model(cls).model_validate(settings)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["type"] == "extra_forbidden":
                names = setting_names(cls)
                takes = (f"{kind} backend settings: {', '.join(names)}" if names
                         else f"the {kind} backend takes no settings")
                text = f"unknown key ({takes})"
            else:
                text = message(error)
            problems.append((tuple(error["loc"]), text))
        return problems
    return []


def trial_settings(kind: str, settings: dict[str, Any],
                   problems: list[SettingProblem]) -> dict[str, Any] | None:
    """`settings` without those `problems` refused (they take their defaults), to build the
    backend with on trial; None when a refused one has no default or the type is unknown."""
    refused = {where[0] for where, _ in problems if where}
    if any(not where for where, _ in problems):
        return None
    params = _parameters(backend_class(kind))
    if any(params[name].default is inspect.Parameter.empty for name in refused if name in params):
        return None
    return {k: v for k, v in settings.items() if k not in refused}


def try_backend(kind: str, settings: dict[str, Any], node_name: str) -> list[SettingProblem]:
    """Build the backend and close it again: what only its constructor checks (a program that
    is not installed, a directory that does not exist). Used only when a config already has
    problems, so that one run reports them all; `serve` builds the real ones."""
    try:
        backend = backend_class(kind)(**settings, node_name=node_name)
    except (TypeError, ValueError, BackendError) as exc:
        return [constructor_problem(kind, exc)]
    with contextlib.suppress(Exception):  # a failing close of a trial changes no verdict
        backend.close()
    return []


def constructor_problem(kind: str, exc: Exception) -> SettingProblem:
    """A constructor's refusal as (setting path, message): `command: ...` names `command`."""
    text = str(exc)
    match = _NAMED_SETTING.fullmatch(text)
    try:
        names = setting_names(backend_class(kind))
    except BackendError:
        names = []
    if match and match["name"] in names:
        return (match["name"],), match["message"]
    return (), text
