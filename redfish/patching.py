"""PATCH bodies and action parameters, checked against a declared shape.

A resource declares what a client may write (`Shape`: property name -> `Prop`, or a nested
shape for an object) and hands the body and its current representation to `parse_patch`:

* a value of the wrong type, not in the list, out of range or badly formed: 400 listing every
  such problem, and nothing changes (DSP0266: a 4XX answer changes nothing);
* read-only (present in the resource) and unknown properties are ignored with a message; if
  nothing writable is left the answer is 400 with those messages, otherwise the change is made
  and the 200 answer carries them in `@Message.ExtendedInfo` (DSP0266 "PATCH (update)");
* OData annotations that clients echo back (`@odata.etag`, `X@Redfish.AllowableValues`) are
  skipped; a body of nothing else is 400 NoOperation, an empty body 400 EmptyJSON.

`parse_action` does the same for an action's parameters, with the Action* messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from flask import request

from redfish import odata
from redfish.errors import Message, RedfishError, error, extended_info

#: returns why a value is unacceptable (PropertyValueFormatError) or None
Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Prop:
    """One writable property (or action parameter)."""

    type: type | tuple[type, ...]
    values: tuple[str, ...] | None = None
    nullable: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    max_length: int | None = None
    check: Check | None = None
    required: bool = False  # action parameters only
    item: Prop | None = None  # for lists: what each element must be


Shape = dict[str, Union[Prop, "Shape"]]


@dataclass
class Patch:
    changes: dict[str, Any]
    ignored: list[Message] = field(default_factory=list)


def show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _type_ok(value: Any, spec: Prop) -> bool:
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool):
        return bool in types  # JSON true is not a number here
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def check_value(value: Any, spec: Prop) -> str | None:
    """The problem with `value` as a kind: "type", "list", "range", "format"; None if fine."""
    if value is None:
        return None if spec.nullable else "type"
    if not _type_ok(value, spec):
        return "type"
    if spec.values is not None and value not in spec.values:
        return "list"
    if isinstance(value, int | float) and not isinstance(value, bool) and (
            (spec.minimum is not None and value < spec.minimum)
            or (spec.maximum is not None and value > spec.maximum)):
        return "range"
    if isinstance(value, str) and spec.max_length is not None and len(value) > spec.max_length:
        return "range"
    if isinstance(value, list) and spec.item is not None:
        for item in value:
            problem = check_value(item, spec.item)
            if problem:
                return problem
    if spec.check is not None and spec.check(value):
        return "format"
    return None


_PROPERTY_MESSAGES = {"type": "PropertyValueTypeError", "list": "PropertyValueNotInList",
                      "range": "PropertyValueOutOfRange", "format": "PropertyValueFormatError"}


def _walk(props: dict[str, Any], shape: Shape, current: dict[str, Any], prefix: str,
          problems: list[Message], ignored: list[Message]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in props.items():
        if "@" in name:
            continue  # an annotation echoed back, not a property
        where = f"{prefix}{name}"
        related = (f"#/{where}",)
        spec = shape.get(name)
        if spec is None:
            message_id = "PropertyNotWritable" if name in current else "PropertyUnknown"
            ignored.append(Message(message_id, (where,), related))
        elif isinstance(spec, dict):
            if not isinstance(value, dict):
                problems.append(Message("PropertyValueTypeError", (show(value), where), related))
                continue
            sub_current = current.get(name)
            inner = _walk(value, spec, sub_current if isinstance(sub_current, dict) else {},
                          f"{where}/", problems, ignored)
            if inner:
                changes[name] = inner
        else:
            problem = check_value(value, spec)
            if problem:
                problems.append(Message(_PROPERTY_MESSAGES[problem], (show(value), where),
                                        related))
            else:
                changes[name] = value
    return changes


def parse_patch(body: dict[str, Any], shape: Shape, current: dict[str, Any]) -> Patch:
    """The writable changes in `body`, or the RedfishError to answer (see the module doc)."""
    if not body:
        raise error(400, "EmptyJSON")
    if all("@" in name for name in body):
        raise error(400, "NoOperation")
    problems: list[Message] = []
    ignored: list[Message] = []
    changes = _walk(body, shape, current, "", problems, ignored)
    if problems:
        raise RedfishError(400, problems + ignored)
    if not changes:
        raise RedfishError(400, ignored)
    return Patch(changes, ignored)


def with_ignored(body: odata.Body, patch: Patch) -> odata.Body:
    """The resource after a partial PATCH: it says which properties were not changed."""
    if patch.ignored:
        return {**body, "@Message.ExtendedInfo": extended_info(patch.ignored)}
    return body


def check_if_match(current: odata.Body) -> None:
    """412 unless the request's If-Match (if any) names the resource as it is now."""
    if_match = request.headers.get("If-Match", "").strip()
    if if_match and not odata.etag_matches(if_match, odata.etag_for(current)):
        raise error(412, "PreconditionFailed")


_ACTION_MESSAGES = {"type": "ActionParameterValueTypeError",
                    "list": "ActionParameterValueNotInList",
                    "range": "ActionParameterValueFormatError",
                    "format": "ActionParameterValueFormatError"}


def parse_action(body: dict[str, Any], action: str, params: dict[str, Prop]) -> dict[str, Any]:
    """The parameters of `action` (e.g. "#Bios.ResetBios") in `body`; 400 for any problem."""
    problems: list[Message] = []
    values: dict[str, Any] = {}
    for name, value in body.items():
        if "@" in name:
            continue
        spec = params.get(name)
        if spec is None:
            problems.append(Message("ActionParameterUnknown", (action, name), (f"#/{name}",)))
            continue
        problem = check_value(value, spec)
        if problem:
            problems.append(Message(_ACTION_MESSAGES[problem], (show(value), name, action),
                                    (f"#/{name}",)))
        else:
            values[name] = value
    for name, spec in params.items():
        if spec.required and name not in body:
            problems.append(Message("ActionParameterMissing", (action, name), (f"#/{name}",)))
    if problems:
        raise RedfishError(400, problems)
    return values
