"""Redfish errors: one exception type that becomes a DMTF error body.

Handlers raise `RedfishError`; the app turns it into
`{"error": {"code", "message", "@Message.ExtendedInfo": [...]}}` with the status and headers it
carries. Messages come from the DMTF Base message registry (the subset this service uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the Base registry version the MessageIds name
BASE_REGISTRY = "Base.1.16.0"

# MessageId -> (message template with %1.., severity, resolution), as in the DMTF Base registry
_BASE: dict[str, tuple[str, str, str]] = {
    "GeneralError": (
        "A general error has occurred.  See Resolution for information on how to resolve the "
        "error, or @Message.ExtendedInfo if Resolution is not provided.",
        "Critical", "None."),
    "InternalError": (
        "The request failed due to an internal service error.  The service is still operational.",
        "Critical",
        "Resubmit the request.  If the problem persists, consider resetting the service."),
    "ResourceMissingAtURI": (
        "The resource at the URI '%1' was not found.", "Critical",
        "Place a valid resource at the URI or correct the URI and resubmit the request."),
    "MalformedJSON": (
        "The request body submitted was malformed JSON and could not be parsed by the receiving "
        "service.", "Critical", "Ensure that the request body is valid JSON and resubmit the "
        "request."),
    "UnrecognizedRequestBody": (
        "The service detected a malformed request body that it was unable to interpret.",
        "Warning", "Correct the request body and resubmit the request if it failed."),
    "EmptyJSON": (
        "The request body submitted contained an empty JSON object and the service is unable to "
        "process it.", "Warning", "Add properties in the JSON object and resubmit the request."),
    "PropertyUnknown": (
        "The property %1 is not in the list of valid properties for the resource.", "Warning",
        "Remove the unknown property from the request body and resubmit the request if the "
        "operation failed."),
    "PropertyNotWritable": (
        "The property %1 is a read-only property and cannot be assigned a value.", "Warning",
        "Remove the property from the request body and resubmit the request if the operation "
        "failed."),
    "PropertyMissing": (
        "The property %1 is a required property and must be included in the request.", "Warning",
        "Ensure that the property is in the request body and has a valid value and resubmit the "
        "request if the operation failed."),
    "PropertyValueTypeError": (
        "The value '%1' for the property %2 is of a different type than the property can accept.",
        "Warning", "Correct the value for the property in the request body and resubmit the "
        "request if the operation failed."),
    "PropertyValueNotInList": (
        "The value '%1' for the property %2 is not in the list of acceptable values.", "Warning",
        "Choose a value from the enumeration list that the implementation can support and "
        "resubmit the request if the operation failed."),
    "PropertyValueConflict": (
        "The property '%1' could not be written because its value would conflict with the value "
        "of the '%2' property.", "Warning", "No resolution is required."),
    "ActionParameterMissing": (
        "The action %1 requires the parameter %2 to be present in the request body.", "Critical",
        "Supply the action with the required parameter in the request body when the request is "
        "resubmitted."),
    "ActionParameterUnknown": (
        "The action %1 was submitted with the invalid parameter %2.", "Warning",
        "Correct the invalid parameter and resubmit the request if the operation failed."),
    "ActionParameterValueTypeError": (
        "The value '%1' for the parameter %2 in the action %3 is of a different type than the "
        "parameter can accept.", "Warning", "Correct the value for the parameter in the request "
        "body and resubmit the request if the operation failed."),
    "ActionParameterValueNotInList": (
        "The value '%1' for the parameter %2 in the action %3 is not in the list of acceptable "
        "values.", "Warning", "Choose a value from the enumeration list that the implementation "
        "can support and resubmit the request if the operation failed."),
    "NoValidSession": (
        "There is no valid session established with the implementation.", "Critical",
        "Establish a session before attempting any operations."),
    "InsufficientPrivilege": (
        "There are insufficient privileges for the account or credentials associated with the "
        "current session to perform the requested operation.", "Critical",
        "Either abandon the operation or change the associated access rights and resubmit the "
        "request if the operation failed."),
    "OperationNotAllowed": (
        "The HTTP method is not allowed on this resource.", "Critical", "None."),
    "PreconditionFailed": (
        "The ETag supplied did not match the ETag required to change this resource.",
        "Critical", "Try the operation again using the appropriate ETag."),
}


@dataclass(frozen=True)
class Message:
    """One `@Message.ExtendedInfo` entry."""

    message_id: str
    args: tuple[str, ...] = ()
    related_properties: tuple[str, ...] = ()
    #: replaces the registry text, for GeneralError whose text says nothing specific
    text: str | None = None
    resolution: str | None = None

    def to_json(self) -> dict[str, Any]:
        template, severity, resolution = _BASE[self.message_id]
        text = self.text
        if text is None:
            text = template
            # highest index first, so %1 does not eat the front of %10
            for i in range(len(self.args), 0, -1):
                text = text.replace(f"%{i}", self.args[i - 1])
        info: dict[str, Any] = {
            "@odata.type": "#Message.v1_1_2.Message",
            "MessageId": f"{BASE_REGISTRY}.{self.message_id}",
            "Message": text,
            "MessageArgs": list(self.args),
            "Severity": severity,  # deprecated by MessageSeverity; older clients still read it
            "MessageSeverity": severity,
            "Resolution": self.resolution or resolution,
        }
        if self.related_properties:
            info["RelatedProperties"] = list(self.related_properties)
        return info


@dataclass(eq=False)  # eq would make the exception unhashable
class RedfishError(Exception):
    """An HTTP error answer with a Redfish error body."""

    status: int
    messages: list[Message]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.status, [m.message_id for m in self.messages])

    def body(self) -> dict[str, Any]:
        infos = [m.to_json() for m in self.messages]
        if len(infos) == 1:
            # one problem: the top-level code/message name it, as most BMCs do
            code, message = infos[0]["MessageId"], infos[0]["Message"]
        else:
            code = f"{BASE_REGISTRY}.GeneralError"
            message = _BASE["GeneralError"][0]
        return {"error": {"code": code, "message": message, "@Message.ExtendedInfo": infos}}


def error(status: int, message_id: str, *args: str, related: str | None = None,
          headers: dict[str, str] | None = None, text: str | None = None,
          resolution: str | None = None) -> RedfishError:
    """A single-message error: `raise error(400, "PropertyUnknown", "Foo", related="#/Foo")`."""
    message = Message(message_id, tuple(args), (related,) if related else (), text, resolution)
    return RedfishError(status, [message], dict(headers or {}))


def not_found(path: str) -> RedfishError:
    return error(404, "ResourceMissingAtURI", path)


def unauthorized() -> RedfishError:
    # the realm makes browsers and curl --anyauth offer Basic; sushy ignores it
    return error(401, "NoValidSession",
                 headers={"WWW-Authenticate": 'Basic realm="Redfish"'})


def forbidden() -> RedfishError:
    return error(403, "InsufficientPrivilege")
