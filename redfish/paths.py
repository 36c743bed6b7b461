"""The service's URIs, in one place so links and routes cannot drift apart.

Each Redfish service is one BMC with one ComputerSystem and one Chassis, both named after the
node; the Manager is always `BMC`.
"""

from __future__ import annotations

import functools
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

ROLES = f"{ACCOUNT_SERVICE}/Roles"
EVENT_SERVICE = f"{ROOT}/EventService"
SUBSCRIPTIONS = f"{EVENT_SERVICE}/Subscriptions"
SSE = f"{EVENT_SERVICE}/SSE"
TASK_SERVICE = f"{ROOT}/TaskService"
TASKS = f"{TASK_SERVICE}/Tasks"
TASK_MONITORS = f"{TASK_SERVICE}/TaskMonitors"
UPDATE_SERVICE = f"{ROOT}/UpdateService"
FIRMWARE_INVENTORY = f"{UPDATE_SERVICE}/FirmwareInventory"
JSON_SCHEMAS = f"{ROOT}/JsonSchemas"
REGISTRIES = f"{ROOT}/Registries"

MANAGER_ID = "BMC"
MANAGER = f"{MANAGERS}/{MANAGER_ID}"
VIRTUAL_MEDIA = f"{MANAGER}/VirtualMedia"
MANAGER_LOG_SERVICES = f"{MANAGER}/LogServices"

#: GET on these needs no credentials (Redfish spec: service root, OData documents)
PUBLIC = frozenset({"/redfish", ROOT, ODATA, METADATA})


@functools.lru_cache(maxsize=4096)  # node names, quoted several times per request
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


def task(task_id: str) -> str:
    return f"{TASKS}/{task_id}"


def task_monitor(task_id: str) -> str:
    return f"{TASK_MONITORS}/{task_id}"


def subscription(sub_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{sub_id}"
