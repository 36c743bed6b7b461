"""The state store (bmc/state.py) for virtual media, Secure Boot, SOL settings, the lockout
policy and event subscriptions: each kind's round trip through a restart, and a row that does
not make sense stopping the node's start with the file, node, kind and key named."""

from __future__ import annotations

import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import create_backend
from backends.base import BootDevice
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.state import FILENAME, StateError, StateStore, open_store
from bmc.users import Privilege
from redfish.destinations import DestinationPolicy
from redfish.event_service import EventFilter, EventService
from redfish.event_service import restore as restore_events
from tests.fake_server import __file__ as FAKE_SERVER

ISO = "http://images.example/ipa.iso"


@pytest.fixture
def reopen(tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """A fresh store on the same directory, as a restarted emulator opens it; the nodes and
    stores made are closed at the end."""
    opened: list[StateStore] = []

    def open_again() -> StateStore:
        if opened:
            opened[-1].close()
        opened.append(open_store(tmp_path))
        return opened[-1]

    yield open_again
    opened[-1].close()


def _node(store: StateStore, backend: Any = None) -> Node:
    return Node("a", backend or MemoryBackend(), state=store.node("a"))


def test_virtual_media_survives_and_an_eject_too(reopen: Callable[[], StateStore]) -> None:
    node = _node(reopen())
    node.virtual_media.insert("Cd", ISO, write_protected=False, user_name="u", password="pw")
    node.virtual_media.insert("USBStick", "http://images.example/stick.img")
    node.virtual_media.set_flags("USBStick", inserted=False)
    node.close()

    again = _node(reopen())
    assert "virtual_media" in again.__dict__  # built at start: read and checked first
    cd = again.virtual_media.get("Cd")
    assert cd is not None and cd.image == ISO and cd.inserted and not cd.write_protected
    assert (cd.transfer_protocol, cd.transfer_method, cd.user_name, cd.password) == (
        "HTTP", "Stream", "u", "pw")
    stick = again.virtual_media.get("USBStick")
    assert stick is not None and stick.image.endswith("stick.img") and not stick.inserted
    again.power(PowerAction.ON, timeout=5)  # untouched by the restore: boots use it as before
    again.virtual_media.eject("Cd")
    again.close()

    third = _node(reopen())
    cd = third.virtual_media.get("Cd")
    assert cd is not None and cd.image is None and not cd.inserted and cd.password is None
    third.close()


def test_saved_media_is_presented_to_the_backend_again(tmp_path: Path,
                                                       reopen: Callable[[], StateStore]) -> None:
    """A backend that applies media to the server (here `ssh` with `host: local`, driving the
    file-backed fake server) is handed the saved image again at start."""
    server = tmp_path / "server"
    server.mkdir()
    fake = f"{shlex.quote(sys.executable)} {shlex.quote(FAKE_SERVER)} {shlex.quote(str(server))}"

    def backend() -> Any:
        return create_backend("ssh", {"host": "local", "power_on": f"{fake} on",
                                      "power_off": f"{fake} off",
                                      "power_status": f"{fake} status",
                                      "insert_media": f"{fake} media {{url}}",
                                      "status_cache": 0}, "a")

    node = _node(reopen(), backend())
    node.virtual_media.insert("Cd", ISO)
    node.close()
    (server / "media").unlink()  # the server lost it meanwhile

    again = _node(reopen(), backend())
    deadline = time.monotonic() + 10
    while not (server / "media").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (server / "media").read_text() == ISO
    again.close()


def test_secure_boot_survives(reopen: Callable[[], StateStore]) -> None:
    node = _node(reopen())
    node.set_boot_override(uefi=True)
    node.secure_boot.set_enabled(True)
    node.secure_boot.reset_database("db", "DeleteAllKeys")
    node.power(PowerAction.ON, timeout=5)  # a verified boot
    assert node.secure_boot.current_boot == "Enabled"
    node.close()

    again = _node(reopen())
    assert "secure_boot" in again.__dict__
    assert again.secure_boot.enabled and again.secure_boot.mode == "DeployedMode"
    assert not again.secure_boot.has_keys("db") and again.secure_boot.has_keys("KEK")
    assert again.secure_boot.current_boot == "Enabled"
    again.secure_boot.reset_keys("DeletePK")
    again.close()

    third = _node(reopen())
    assert third.secure_boot.mode == "SetupMode"
    third.close()


def test_sol_settings_survive_in_plain_units(reopen: Callable[[], StateStore]) -> None:
    store = reopen()
    node = _node(store)
    sol = node.console.sol
    sol.enabled, sol.privilege, sol.non_volatile_bit_rate = False, Privilege.OPERATOR, 0x06
    sol.volatile_bit_rate, sol.accumulate_interval, sol.retry_interval = 0x08, 20, 30
    node.console.save_sol()
    saved = store.node("a").get("sol", "settings")
    assert saved["bit_rate"] == 9600 and saved["privilege"] == "operator"
    assert saved["accumulate_ms"] == 100 and saved["retry_interval_ms"] == 300
    node.close()

    again = _node(reopen())
    sol = again.console.sol
    assert (sol.enabled, sol.privilege, sol.non_volatile_bit_rate) == (False, Privilege.OPERATOR,
                                                                       0x06)
    assert (sol.accumulate_interval, sol.retry_interval) == (20, 30)
    # the volatile rate is lost with the BMC, as on a reset: it starts as the non-volatile one
    assert sol.volatile_bit_rate == 0x06
    again.close()


def test_lockout_policy_survives(reopen: Callable[[], StateStore]) -> None:
    node = _node(reopen())
    node.lockout.set_policy(threshold=3, duration=600, reset_after=120)
    node.close()
    again = _node(reopen())
    assert "lockout" in again.__dict__
    lockout = again.lockout
    assert (lockout.threshold, lockout.duration, lockout.reset_after) == (3, 600.0, 120.0)
    again.close()


def test_event_subscriptions_and_settings_survive(reopen: Callable[[], StateStore]) -> None:
    node = _node(reopen())
    service = EventService(node)
    policy = DestinationPolicy().with_own("127.0.0.1", 8000)
    kept = service.subscribe("http://user:pw@127.0.0.1:9999/events", "ctx-1",
                             EventFilter(registry_prefixes=["ResourceEvent"],
                                         origin_resources=["/redfish/v1/Systems/a"],
                                         subordinate_resources=True),
                             {"X-Token": "secret"}, policy)
    gone = service.subscribe("http://127.0.0.1:9998/events", "ctx-2", policy=policy)
    service.set_context(kept.id, "ctx-changed")
    assert service.unsubscribe(gone.id)
    service.configure(enabled=False, retry_attempts=1, retry_interval=7)
    node.close()

    again = _node(reopen())
    restored = EventService(again)
    assert restored.restore(policy) == 1
    [sub] = restored.subscriptions()
    assert (sub.id, sub.destination, sub.context) == (kept.id, kept.destination, "ctx-changed")
    assert sub.http_headers == {"X-Token": "secret"} and sub.policy == policy
    assert sub.filter == kept.filter
    assert (restored.enabled, restored.delivery_retry_attempts,
            restored.delivery_retry_interval) == (False, 1, 7)
    # a new one never takes a kept one's id (a deleted one's may come again, as on BMCs)
    assert restored.subscribe("http://127.0.0.1:9997/e", policy=policy).id == "2"
    again.close()


def test_subscription_the_policy_now_refuses_is_dropped(reopen: Callable[[], StateStore]) -> None:
    node = _node(reopen())
    EventService(node).subscribe("http://127.0.0.1:9999/events", policy=DestinationPolicy())
    node.close()
    store = reopen()
    again = _node(store)
    narrow = DestinationPolicy.from_networks(["10.0.0.0/8"]).with_own("127.0.0.1", 8000)
    assert restore_events(again, narrow) == 0  # the allow list changed since
    assert store.node("a").load("subscription") == {}
    again.close()


def test_nothing_saved_makes_no_event_service() -> None:
    node = Node("a", MemoryBackend())
    assert restore_events(node, DestinationPolicy()) == 0
    node.close()


def _corrupt(tmp_path: Path, kind: str, key: str, value: str) -> None:
    open_store(tmp_path).close()
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("INSERT INTO state VALUES ('a', ?, ?, ?)", (kind, key, value))


@pytest.mark.parametrize(("kind", "key", "value"), [
    ("virtual_media", "Cd", '{"image": "ftp://x/y.iso", "inserted": true}'),
    ("virtual_media", "Cd", '{"image": "gopher://x/y.iso", "inserted": true, '
                            '"write_protected": true, "transfer_method": null, '
                            '"transfer_protocol": null, "user_name": null, "password": null}'),
    ("virtual_media", "Cd", "[1, 2"),  # not JSON at all
    ("secure_boot", "settings", '{"enabled": "yes", "installed": {}, "current_boot": false}'),
    ("sol", "settings", '{"enabled": true, "bit_rate": 12345}'),
    ("lockout", "policy", '{"threshold": -1, "duration": 0, "reset_after": 0}'),
    ("boot", "override", '{"device": "Floppy-disk", "persistent": true, "uefi": false}'),
    ("power", "state", '"Sideways"'),
])
def test_unreadable_row_stops_the_node(tmp_path: Path, kind: str, key: str, value: str) -> None:
    _corrupt(tmp_path, kind, key, value)
    store = open_store(tmp_path)
    with pytest.raises(StateError, match=f"state file {tmp_path / FILENAME}: node 'a' {kind} "
                                         f"{key}: "):
        Node("a", MemoryBackend(), state=store.node("a"))  # at start, before it serves
    store.close()


@pytest.mark.parametrize("value", ['{"destination": 7}', '{"destination": "http://h/e", '
                                   '"context": "", "protocol": "Redfish", "http_headers": {}, '
                                   '"filter": {"registry_prefixes": "ResourceEvent"}}'])
def test_unreadable_subscription_is_reported(tmp_path: Path, value: str) -> None:
    _corrupt(tmp_path, "subscription", "1", value)
    store = open_store(tmp_path)
    node = _node(store)
    with pytest.raises(StateError, match=f"state file {tmp_path / FILENAME}: node 'a' "
                                         "subscription 1: "):
        restore_events(node, DestinationPolicy())
    node.close()
    store.close()


def test_forget_deletes_one_nodes_rows(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.node("a").save("boot", "override", {"device": "pxe"})
    store.node("a").save("sol", "settings", {})
    store.node("b").save("boot", "override", {"device": "hdd"})
    assert store.forget("a") == 2
    assert store.node("a").kinds() == set() and store.node("b").kinds() == {"boot"}
    store.close()


def test_power_intent_is_saved_once_per_change(reopen: Callable[[], StateStore]) -> None:
    """The intent is saved before Chassis Control is answered; the action's result, the same
    state, is not saved again (one fsync per change, not two)."""
    store = reopen()
    node = _node(store)
    writes = []
    real = store._write
    store._write = lambda statements: (writes.append(statements), real(statements))[1]
    node.power(PowerAction.ON, timeout=5)
    node.power(PowerAction.ON, timeout=5)  # already on: nothing new to save
    node.power(PowerAction.FORCE_OFF, timeout=5)
    power = [w for w in writes if any("power" in str(args) for _, args in w)]
    assert len(power) == 2, power
    node.close()
    again = _node(reopen())
    assert again.power_state.value == "Off"
    again.close()


def test_boot_device_power_of_a_restored_node_still_works(reopen: Callable[[], StateStore]
                                                         ) -> None:
    """A node built at start for its saved features still boots and records the media."""
    node = _node(reopen())
    node.virtual_media.insert("Cd", ISO)
    node.close()
    again = _node(reopen())
    again.set_boot_override(BootDevice.CDROM)
    again.power(PowerAction.ON, timeout=5)
    assert again.last_boot_media == ISO
    again.close()


def test_lan_parameter_26_sets_the_lockout_and_refuses_what_it_cannot_do(
        reopen: Callable[[], StateStore]) -> None:
    from ipmi.commands import NETFN_TRANSPORT, Context, IpmiError
    from ipmi.endpoint import BmcEndpoint

    node = _node(reopen())
    endpoint = BmcEndpoint(node, local_address=("127.0.0.1", 6230))

    def set_26(value: bytes) -> int:
        entry = endpoint.commands[(NETFN_TRANSPORT, 0x01)]
        try:
            entry.handler(Context(node, bytes((1, 26)) + value, None, endpoint, NETFN_TRANSPORT,
                                  0x01, ("127.0.0.1", 1)))
        except IpmiError as exc:
            return exc.code
        return 0

    assert set_26(bytes((0, 7, 6, 0, 12, 0))) == 0  # threshold 7, reset 60 s, lockout 120 s
    assert set_26(bytes((1, 7, 6, 0, 12, 0))) == 0xCC  # no session audit sensor to use
    assert set_26(bytes((0, 7, 6))) == 0xC7
    endpoint.close()
    node.close()
    again = _node(reopen())
    lockout = again.lockout
    assert (lockout.threshold, lockout.reset_after, lockout.duration) == (7, 60.0, 120.0)
    again.close()
