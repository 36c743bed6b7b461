"""The power path never blocks a front end: actions run on the node's worker, in order.

A backend whose calls wait on an Event stands in for a slow one (a container's stop timeout, a
VM's shutdown, a remote API); the IPMI handlers and the Redfish app are driven without sockets.
"""

from __future__ import annotations

import threading
import time

import pytest

from backends.base import (
    BackendError,
    BootDevice,
    BootMode,
    Capabilities,
    PowerOp,
    PowerState,
)
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.power import BackendUnavailable, NodeBusy, Unsupported
from ipmi.commands import NETFN_CHASSIS, Context, IpmiError
from ipmi.endpoint import BmcEndpoint
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app

ADMIN = ("admin", "password")
SYSTEM = "/redfish/v1/Systems/slow"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"
PEER = ("127.0.0.1", 40000)


class GatedBackend(MemoryBackend):
    """A memory server whose power calls wait until the test opens the gate."""

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.calls: list[str] = []
        self.fail: str | None = None

    def _wait(self, name: str) -> None:
        self.calls.append(name)
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise BackendError(self.fail)

    def power_on(self, boot_device: BootDevice) -> None:
        self._wait("on")
        super().power_on(boot_device)

    def power_off(self) -> None:
        self._wait("off")
        super().power_off()


def make_node(backend: MemoryBackend, name: str = "slow") -> Node:
    node = Node(name, backend)
    node.users.add("admin", "password")
    return node


def chassis(node: Node, cmd: int, data: bytes = b"") -> bytes:
    endpoint = BmcEndpoint(node, local_address=("192.0.2.7", 6230))
    entry = endpoint.commands[(NETFN_CHASSIS, cmd)]
    return entry.handler(Context(node, data, None, endpoint, NETFN_CHASSIS, cmd, PEER))


def completion(node: Node, cmd: int, data: bytes = b"") -> int:
    try:
        chassis(node, cmd, data)
    except IpmiError as exc:
        return exc.code
    return 0


def redfish(node: Node):  # type: ignore[no-untyped-def]
    client = create_app().test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    return client


@pytest.fixture
def gated() -> tuple[Node, GatedBackend]:
    backend = GatedBackend()
    node = make_node(backend)
    yield node, backend
    backend.gate.set()
    node.close()


def test_chassis_control_answers_at_once_while_the_backend_is_slow(gated) -> None:
    node, backend = gated
    started = time.monotonic()
    assert completion(node, 0x02, b"\x01") == 0  # power up: accepted
    assert time.monotonic() - started < 0.05
    # power status is instant and honest: still off, the action is under way
    assert chassis(node, 0x01)[0] & 0x01 == 0
    system = redfish(node).get(SYSTEM, auth=ADMIN).get_json()
    assert system["PowerState"] == "PoweringOn"
    backend.gate.set()
    assert node.settle(5)
    assert chassis(node, 0x01)[0] & 0x01 == 1
    assert redfish(node).get(SYSTEM, auth=ADMIN).get_json()["PowerState"] == "On"


def test_actions_on_one_node_run_in_order(gated) -> None:
    node, backend = gated
    node.submit_power(PowerAction.ON)
    node.submit_power(PowerAction.FORCE_OFF)
    node.submit_power(PowerAction.ON)
    backend.gate.set()
    assert node.settle(5)
    assert backend.calls == ["on", "off", "on"]
    assert node.power_state is PowerState.ON
    actions = [e.detail for e in node.sel.entries()]
    assert len(actions) >= 3


def test_a_full_queue_is_node_busy_and_other_nodes_are_unaffected(gated) -> None:
    node, _backend = gated
    node.submit_power(PowerAction.FORCE_OFF)  # runs, and waits at the gate
    deadline = time.monotonic() + 5
    while not _backend.calls:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    for _ in range(node.worker.max_pending):  # the rest wait in the queue
        node.submit_power(PowerAction.FORCE_OFF)
    with pytest.raises(NodeBusy):
        node.submit_power(PowerAction.FORCE_OFF)
    assert completion(node, 0x02, b"\x00") == 0xC0  # IPMI: node busy
    response = redfish(node).post(RESET, json={"ResetType": "ForceOff"}, auth=ADMIN)
    assert response.status_code == 503 and response.headers["Retry-After"]
    other = make_node(MemoryBackend(), "other")
    try:
        started = time.monotonic()
        other.power(PowerAction.ON, timeout=2)
        assert time.monotonic() - started < 1.0
        assert other.power_state is PowerState.ON
    finally:
        other.close()


def test_a_slow_reset_answers_202_with_a_task_that_completes(gated) -> None:
    node, backend = gated
    client = redfish(node)
    started = time.monotonic()
    response = client.post(RESET, json={"ResetType": "On"}, auth=ADMIN)
    assert response.status_code == 202
    assert 0.9 < time.monotonic() - started < 3.0  # waited about a second, then handed over
    monitor = response.headers["Location"]
    assert client.get(monitor, auth=ADMIN).status_code == 202  # still running
    backend.gate.set()
    assert node.settle(5)
    deadline = time.monotonic() + 5
    while (done := client.get(monitor, auth=ADMIN)).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert done.status_code == 200 and done.get_json()["TaskState"] == "Completed"
    assert node.power_state is PowerState.ON


def test_a_quick_reset_answers_204() -> None:
    node = make_node(MemoryBackend())
    try:
        response = redfish(node).post(RESET, json={"ResetType": "On"}, auth=ADMIN)
        assert response.status_code == 204, response.get_data(as_text=True)
        assert node.power_state is PowerState.ON
    finally:
        node.close()


def test_a_failing_backend_is_reported_then_refused_until_it_recovers(gated) -> None:
    node, backend = gated
    backend.fail = "docker daemon unreachable"
    backend.gate.set()
    client = redfish(node)
    response = client.post(RESET, json={"ResetType": "On"}, auth=ADMIN)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "docker daemon unreachable" in response.get_json()["error"]["message"]
    assert node.backend_fault == "docker daemon unreachable"
    # the failure is in the SEL and the system log, and the node answers everything else
    assert any("unreachable" in (e.detail or "") for e in node.sel.entries())
    assert any("unreachable" in e.message for e in node.system_log.entries())
    system = client.get(SYSTEM, auth=ADMIN).get_json()
    assert system["Status"]["Health"] == "Critical" and system["PowerState"] == "Off"
    assert completion(node, 0x02, b"\x01") == 0xD5  # cannot be accepted now
    assert chassis(node, 0x01)[0] & 0x01 == 0
    with pytest.raises(BackendUnavailable):
        node.submit_power(PowerAction.ON)
    # the backend answers again: the poller notices, and actions are accepted again
    backend.fail = None
    deadline = time.monotonic() + 10
    while node.backend_fault is not None:
        assert time.monotonic() < deadline, "the failing backend was never polled again"
        time.sleep(0.05)
    node.power(PowerAction.ON, timeout=5)
    assert node.power_state is PowerState.ON
    assert client.get(SYSTEM, auth=ADMIN).get_json()["Status"]["Health"] == "OK"


def test_a_power_change_reported_from_outside_shows_in_both_protocols() -> None:
    backend = MemoryBackend(power_on=True)
    node = make_node(backend)
    try:
        backend.power_off()  # e.g. `docker stop` from outside
        backend.report_power(PowerState.OFF, "stopped from outside")
        assert chassis(node, 0x01)[0] & 0x01 == 0
        assert redfish(node).get(SYSTEM, auth=ADMIN).get_json()["PowerState"] == "Off"
        backend.report_power(PowerState.OFF, "the same news twice")  # logged once
        exits = [e for e in node.system_log.entries() if "powered off" in e.message]
        assert len(exits) == 1
    finally:
        node.close()


class PolledBackend(MemoryBackend):
    """A server whose state changes behind the BMC's back and that reports nothing."""

    poll_interval = 0.1
    capabilities = Capabilities()


def test_a_polled_backend_is_read_again_and_again() -> None:
    backend = PolledBackend()
    node = make_node(backend)
    try:
        backend._power = PowerState.ON  # switched on elsewhere (a cloud console)
        deadline = time.monotonic() + 5
        while node.power_state is not PowerState.ON:
            assert time.monotonic() < deadline, "the poller never read the backend"
            time.sleep(0.02)
    finally:
        node.close()


class NoNmiNoUefiBackend(MemoryBackend):
    capabilities = Capabilities(
        power=frozenset(PowerOp) - {PowerOp.NMI},
        boot_devices=frozenset({BootDevice.PXE, BootDevice.DISK}),
        boot_modes=frozenset({BootMode.LEGACY}), virtual_media=False)


def test_front_ends_offer_only_what_the_backend_can_do() -> None:
    node = make_node(NoNmiNoUefiBackend(power_on=True))
    client = redfish(node)
    try:
        system = client.get(SYSTEM, auth=ADMIN).get_json()
        resets = system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
        assert "Nmi" not in resets and "ForceOff" in resets
        boot = system["Boot"]
        assert boot["BootSourceOverrideTarget@Redfish.AllowableValues"] == ["None", "Pxe", "Hdd"]
        assert boot["BootSourceOverrideMode@Redfish.AllowableValues"] == ["Legacy"]
        response = client.post(RESET, json={"ResetType": "Nmi"}, auth=ADMIN)
        assert response.status_code == 400
        etag = client.get(SYSTEM, auth=ADMIN).headers["ETag"]
        response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Cd"}},
                                auth=ADMIN, headers={"If-Match": etag})
        assert response.status_code == 400
        assert "PropertyValueNotInList" in response.get_data(as_text=True)
        # IPMI: NMI (chassis control 4) and a CD boot (selector 5) are invalid data
        assert completion(node, 0x02, b"\x04") == 0xCC
        assert completion(node, 0x08, bytes((5, 0x80, 5 << 2, 0, 0, 0))) == 0xCC
        assert completion(node, 0x08, bytes((5, 0x80, 1 << 2, 0, 0, 0))) == 0  # PXE is fine
        with pytest.raises(Unsupported):
            node.submit_power(PowerAction.NMI)
    finally:
        node.close()
