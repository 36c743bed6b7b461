"""IPMI command handlers, registered by (netfn, command) with the privilege each needs.

A handler takes a `Context` and returns the response data (completion code 0), or raises
`IpmiError` with a completion code. Handlers are plain functions: they read and change the
node model and know nothing of packets or sessions beyond `Context`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bmc.users import Privilege

if TYPE_CHECKING:
    from bmc.node import Node
    from ipmi.session import Session

# completion codes (IPMI 2.0 table 5-2)
CC_OK = 0x00
CC_NODE_BUSY = 0xC0
CC_INVALID_COMMAND = 0xC1
CC_INVALID_FOR_LUN = 0xC2
CC_TIMEOUT = 0xC3
CC_OUT_OF_SPACE = 0xC4
CC_INVALID_RESERVATION = 0xC5
CC_DATA_TRUNCATED = 0xC6
CC_REQ_DATA_LEN_INVALID = 0xC7
CC_REQ_DATA_LEN_EXCEEDED = 0xC8
CC_PARAM_OUT_OF_RANGE = 0xC9
CC_CANT_RETURN_BYTES = 0xCA
CC_NOT_PRESENT = 0xCB
CC_INVALID_DATA_FIELD = 0xCC
CC_ILLEGAL_FOR_SENSOR = 0xCD
CC_CANT_RESPOND = 0xCE
CC_DUPLICATE_REQUEST = 0xCF
CC_SDR_IN_UPDATE = 0xD0
CC_FIRMWARE_UPDATE = 0xD1
CC_BMC_INITIALIZING = 0xD2
CC_DESTINATION_UNAVAILABLE = 0xD3
CC_INSUFFICIENT_PRIVILEGE = 0xD4
CC_NOT_SUPPORTED_IN_STATE = 0xD5
CC_UNSPECIFIED = 0xFF

NETFN_CHASSIS = 0x00
NETFN_BRIDGE = 0x02
NETFN_SENSOR = 0x04
NETFN_APP = 0x06
NETFN_FIRMWARE = 0x08
NETFN_STORAGE = 0x0A
NETFN_TRANSPORT = 0x0C
NETFN_GROUP = 0x2C


class IpmiError(Exception):
    """A command failed with an IPMI completion code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason or f"completion code {code:#04x}")
        self.code = code


@dataclass
class Context:
    """What a handler may see: the node, the request data and the session (None before one)."""

    node: Node
    data: bytes
    session: Session | None
    endpoint: Any  # ipmi.endpoint.BmcEndpoint; typed loosely to avoid an import cycle
    netfn: int = 0
    command: int = 0
    peer: Hashable = None

    def need(self, length: int, at_most: int | None = None) -> bytes:
        """The request data, checked to hold `length` (..`at_most`) bytes."""
        if len(self.data) < length or (at_most is not None and len(self.data) > at_most):
            raise IpmiError(CC_REQ_DATA_LEN_INVALID)
        return self.data


Handler = Callable[[Context], bytes]


@dataclass(frozen=True)
class Command:
    handler: Handler
    privilege: Privilege
    #: may run outside a session (Get Channel Authentication Capabilities and friends)
    sessionless: bool = False


REGISTRY: dict[tuple[int, int], Command] = {}


def command(netfn: int, cmd: int, privilege: Privilege = Privilege.USER,
            sessionless: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY[(netfn, cmd)] = Command(handler, privilege, sessionless)
        return handler

    return register


#: the handler modules of each netfn: a command not registered yet imports only its own netfn's
#: modules (tests/unit/test_startup.py checks this against what the modules register)
MODULES: dict[int, tuple[str, ...]] = {
    NETFN_APP: ("app", "session", "channel", "mc", "sol", "users"),
    NETFN_CHASSIS: ("chassis",),
    NETFN_SENSOR: ("sensor",),
    NETFN_STORAGE: ("storage",),
    NETFN_TRANSPORT: ("channel", "sol"),
    NETFN_GROUP: ("dcmi",),
}
_loaded: set[int] = set()  # netfns whose modules are all imported


def load_core() -> dict[tuple[int, int], Command]:
    """Import what answers first (session setup, chassis power) and return the registry.

    The other handler modules (SDR, SEL, FRU, DCMI, SOL, users, LAN, ...) are imported on
    first use (`lookup`): they bring in the sensor and SEL models, and a BMC should answer
    before those are loaded.
    """
    from ipmi.commands import app, chassis, session  # noqa: F401

    return REGISTRY


def load_all() -> dict[tuple[int, int], Command]:
    """Import every handler module (each registers itself) and return the registry."""
    for netfn in MODULES:
        _load(netfn)
    return REGISTRY


def lookup(netfn: int, cmd: int) -> Command | None:
    """The handler of (netfn, cmd), importing its netfn's modules if they are not yet."""
    entry = REGISTRY.get((netfn, cmd))
    if entry is None and netfn not in _loaded:
        _load(netfn)
        entry = REGISTRY.get((netfn, cmd))
    return entry


def _load(netfn: int) -> None:
    for name in MODULES.get(netfn, ()):
        importlib.import_module(f"{__name__}.{name}")
    _loaded.add(netfn)
