"""The service's URIs, in one place so links and routes cannot drift apart.

Each Redfish service is one BMC with one ComputerSystem and one Chassis, both named after the
node; the Manager is always `BMC`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from bmc.node import Node

ROOT = "/redfish/v1"
SERVICE_ROOT = f"{ROOT}/"  # the root's @odata.id carries the slash, as in the DMTF mockups
ODATA = f"{ROOT}/odata"
METADATA = f"{ROOT}/$metadata"
SYSTEMS = f"{ROOT}/Systems"
MANAGERS = f"{ROOT}/Managers"
CHASSIS = f"{ROOT}/Chassis"
SESSION_SERVICE = f"{ROOT}/SessionService"
SESSIONS = f"{SESSION_SERVICE}/Sessions"
ACCOUNT_SERVICE = f"{ROOT}/AccountService"
ACCOUNTS = f"{ACCOUNT_SERVICE}/Accounts"

MANAGER_ID = "BMC"
MANAGER = f"{MANAGERS}/{MANAGER_ID}"

#: GET on these needs no credentials (Redfish spec: service root, OData documents)
PUBLIC = frozenset({"/redfish", ROOT, ODATA, METADATA})


def segment(name: str) -> str:
    """A node name as one URI path segment."""
    return quote(name, safe="-._~")


def system(node: Node) -> str:
    return f"{SYSTEMS}/{segment(node.name)}"


def system_reset(node: Node) -> str:
    return f"{system(node)}/Actions/ComputerSystem.Reset"


def chassis(node: Node) -> str:
    return f"{CHASSIS}/{segment(node.name)}"


def session(session_id: str) -> str:
    return f"{SESSIONS}/{session_id}"


def account(user_id: int) -> str:
    return f"{ACCOUNTS}/{user_id}"
