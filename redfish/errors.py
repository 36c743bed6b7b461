"""Redfish errors: one exception type that becomes a DMTF error body.

Handlers raise `RedfishError`; the app turns it into
`{"error": {"code", "message", "@Message.ExtendedInfo": [...]}}` with the status and headers it
carries. Messages come from the DMTF Base message registry (the subset this service uses).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

#: the Base registry version the MessageIds name
BASE_REGISTRY = "Base.1.22.1"

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
    "Success": (
        "The request completed successfully.",
        "OK", "None."),
    "Created": (
        "The resource was created successfully.",
        "OK", "None."),
    "PropertyValueFormatError": (
        "The value '%1' for the property %2 is not a format that the property can accept.",
        "Warning", "Correct the value for the property in the request body and resubmit "
        "the request if the operation failed."),
    "PropertyValueOutOfRange": (
        "The value '%1' for the property %2 is not in the supported range of acceptable values.",
        "Warning", "Correct the value for the property in the request body and resubmit "
        "the request if the operation failed."),
    "PropertyValueError": (
        "The value provided for the property %1 is not valid.",
        "Warning", "Correct the value for the property in the request body and resubmit "
        "the request if the operation failed."),
    "ActionParameterValueFormatError": (
        "The value '%1' for the parameter %2 in the action %3 is not a format that the "
        "parameter can accept.",
        "Warning", "Correct the value for the parameter in the request body and resubmit "
        "the request if the operation failed."),
    "ActionParameterValueError": (
        "The value for the parameter %1 in the action %2 is invalid.",
        "Warning", "Correct the value for the parameter in the request body and resubmit "
        "the request if the operation failed."),
    "ActionParameterValueConflict": (
        "The parameter '%1' with the requested value of '%2' does not meet the "
        "constraints of the implementation.",
        "Warning", "None."),
    "ResourceAlreadyExists": (
        "The requested resource of type %1 with the property %2 with the value '%3' "
        "already exists.",
        "Critical", "Do not repeat the create operation as the resource was already created."),
    "CreateLimitReachedForResource": (
        "The create operation failed because the resource has reached the limit of "
        "possible resources.",
        "Critical", "Either delete resources and resubmit the request if the operation "
        "failed or do not resubmit the request."),
    "EventSubscriptionLimitExceeded": (
        "The event subscription failed due to the number of simultaneous subscriptions "
        "exceeding the limit of the implementation.",
        "Critical", "Reduce the number of other subscriptions before trying to establish "
        "the event subscription or increase the limit of simultaneous "
        "subscriptions, if supported."),
    "QueryParameterValueFormatError": (
        "The value '%1' for the parameter %2 is not a format that the parameter can accept.",
        "Warning", "Correct the value for the query parameter in the request and resubmit "
        "the request if the operation failed."),
    "QueryParameterValueError": (
        "The value for the parameter %1 is invalid.",
        "Warning", "Correct the value for the query parameter in the request and resubmit "
        "the request if the operation failed."),
    "QueryNotSupportedOnResource": (
        "Querying is not supported on the requested resource.",
        "Warning", "Remove the query parameters and resubmit the request if the operation failed."),
    "QueryParameterUnsupported": (
        "Query parameter '%1' is not supported.",
        "Warning", "Correct or remove the query parameter and resubmit the request."),
    "ServiceTemporarilyUnavailable": (
        "The service is temporarily unavailable.  Retry in %1 seconds.",
        "Critical", "Wait for the indicated retry duration and retry the operation."),
    "PasswordIncorrectLength": (
        "The password provided for this account does not meet the password length "
        "requirements of the service.",
        "Critical", "Resubmit the request with a password that meets the password length "
        "requirements as specified by the `MinPasswordLength` and "
        "`MaxPasswordLength` properties in the `AccountService` resource."),
    "ActionNotSupported": (
        "The action %1 is not supported by the resource.",
        "Critical", "Check the Actions property in the resource for the supported actions."),
    "ResourceCannotBeDeleted": (
        "The delete request failed because the resource requested cannot be deleted.",
        "Critical", "Do not attempt to delete a non-deletable resource."),
    "ResourceInUse": (
        "The change to the requested resource failed because the resource is in use or in"
        " transition.",
        "Warning", "Remove the condition and resubmit the request if the operation failed."),
    "StringValueTooLong": (
        "The string '%1' exceeds the length limit %2.",
        "Warning", "Resubmit the request with an appropriate string length."),
    "AccountModified": (
        "The account was successfully modified.",
        "OK", "None."),
    "AccountRemoved": (
        "The account was successfully removed.",
        "OK", "None."),
    "PropertyValueResourceConflict": (
        "The property '%1' with the requested value of '%2' could not be written because "
        "the value conflicts with the state or configuration of the resource at '%3'.",
        "Warning", "None."),
    "InvalidURI": (
        "The URI %1 was not found.",
        "Critical", "Provide a valid URI and resubmit the request."),
    "NoOperation": (
        "The request body submitted contain no data to act upon and no changes to the resource "
        "took place.", "Warning", "Add properties in the JSON object and resubmit the request."),
    "PreconditionFailed": (
        "The ETag supplied did not match the ETag required to change this resource.",
        "Critical", "Try the operation again using the appropriate ETag."),
}


#: a URL's user:password part: from the scheme to the last "@" of the same token (a password
#: may hold characters a URL parser would stop at; better to hide too much than too little)
_CREDENTIALS = re.compile(r"""(?i)\b([a-z][a-z0-9+.-]*://)[^\s"'<>]*@""")


def redact_urls(text: str) -> str:
    """`text` with the user:password of every URL in it replaced by `***`: error bodies echo
    what the client sent (an image URL, an event destination), never its credentials."""
    if "@" not in text:
        return text
    return _CREDENTIALS.sub(r"\1***@", text)


class RedactUrlsFilter(logging.Filter):
    """Rewrites a record so that no URL credentials reach any handler: its message, and the
    text of its traceback (an exception's message may quote a URL a client sent)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's problem, not ours
            return True
        record.msg, record.args = redact_urls(message), None
        if record.exc_info and not record.exc_text:
            # logging.Formatter uses exc_text when set: the redacted traceback is what is shown
            record.exc_text = redact_urls(_FORMATTER.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact_urls(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
REDACT_URLS = RedactUrlsFilter()


def redact_logs(prefix: str = "redfish") -> None:
    """Put REDACT_URLS on every logger named `prefix` or below it that exists now (a filter
    on a logger does not apply to its children's records, so each gets its own)."""
    names = [name for name in logging.root.manager.loggerDict
             if name == prefix or name.startswith(f"{prefix}.")]
    for name in [prefix, *names]:
        logger = logging.getLogger(name)
        if REDACT_URLS not in logger.filters:
            logger.addFilter(REDACT_URLS)


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
        args = [redact_urls(arg) for arg in self.args]
        text = self.text
        if text is None:
            text = template
            # highest index first, so %1 does not eat the front of %10
            for i in range(len(args), 0, -1):
                text = text.replace(f"%{i}", args[i - 1])
        info: dict[str, Any] = {
            "@odata.type": "#Message.v1_1_2.Message",
            "MessageId": f"{BASE_REGISTRY}.{self.message_id}",
            "Message": redact_urls(text),
            "MessageArgs": args,
            "Severity": severity,  # deprecated by MessageSeverity; older clients still read it
            "MessageSeverity": severity,
            "Resolution": self.resolution or resolution,
        }
        if self.related_properties:
            info["RelatedProperties"] = list(self.related_properties)
        return info


#: most `@Message.ExtendedInfo` entries an answer carries: a body of 50,000 unknown properties
#: would otherwise get a 20 MB answer (every entry ~400 bytes) for a 0.5 MiB request
MAX_EXTENDED_INFO = 20


def extended_info(messages: list[Message]) -> list[dict[str, Any]]:
    """The `@Message.ExtendedInfo` of `messages`: the first MAX_EXTENDED_INFO, then one entry
    saying how many more were left out."""
    infos = [m.to_json() for m in messages[:MAX_EXTENDED_INFO]]
    more = len(messages) - MAX_EXTENDED_INFO
    if more > 0:
        infos.append(Message(
            "GeneralError", text=f"{more} more messages of this kind were left out.",
            resolution="Correct the problems listed and resubmit the request to see the "
                       "rest.").to_json())
    return infos


@dataclass(eq=False)  # eq would make the exception unhashable
class RedfishError(Exception):
    """An HTTP error answer with a Redfish error body."""

    status: int
    messages: list[Message]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.status, [m.message_id for m in self.messages])

    def body(self) -> dict[str, Any]:
        infos = extended_info(self.messages)
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
