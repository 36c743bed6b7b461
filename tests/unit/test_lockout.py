"""One lockout for both protocols, per source: wrong passwords from one address cannot keep
the account's owner out from another (issue: hardening, findings 6 and 7)."""

from __future__ import annotations

import struct

from bmc.lockout import SOURCE_FACTOR, AccountLockout
from ipmi import wire
from ipmi.endpoint import HALF_OPEN_TIMEOUT
from tests.unit.test_ipmi_session_robustness import Console, make, open_session


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_lock_out_their_source_not_the_account() -> None:
    clock = Clock()
    lockout = AccountLockout(threshold=3, duration=60, reset_after=60, clock=clock)
    for _ in range(3):
        lockout.failed("admin", "10.0.0.66")
    assert lockout.is_locked("admin", "10.0.0.66")
    assert not lockout.is_locked("admin", "10.0.0.1")  # its owner, elsewhere
    assert lockout.is_locked("admin")  # what Redfish's Locked shows
    clock.now += 61
    assert not lockout.is_locked("admin", "10.0.0.66")


def test_a_source_guessing_names_is_held_off_as_a_whole() -> None:
    lockout = AccountLockout(threshold=2, clock=Clock())
    for i in range(2 * SOURCE_FACTOR):
        lockout.failed(f"nobody-{i}", "10.0.0.66", known=False)
    assert lockout.is_locked("admin", "10.0.0.66")
    assert not lockout.is_locked("admin", "10.0.0.1")


def test_an_administrator_unlock_frees_every_source() -> None:
    lockout = AccountLockout(threshold=1, clock=Clock())
    lockout.failed("admin", "a")
    lockout.failed("admin", "b")
    lockout.unlock("admin")
    assert not lockout.is_locked("admin", "a") and not lockout.is_locked("admin")


def _login(endpoint, source: str, password: str = "password", console_id: int = 1):  # type: ignore[no-untyped-def]
    return open_session(endpoint, console_id=console_id, password=password,
                        peer=(source, 40000))


def test_ipmi_wrong_passwords_lock_out_that_source_for_ipmi_and_redfish() -> None:
    endpoint, _ = make()
    for _ in range(5):
        assert _login(endpoint, "10.0.0.66", password="wrong") == 0x0F
    # right password, same source: refused as if the name were unknown (no oracle)
    assert _login(endpoint, "10.0.0.66") == 0x0D
    assert endpoint.node.lockout.is_locked("admin", "10.0.0.66")  # Redfish reads this
    assert isinstance(_login(endpoint, "10.0.0.1", console_id=2), Console)


def test_a_client_that_stops_after_rakp2_counts_as_a_wrong_password() -> None:
    """ipmitool checks our RAKP2 against its password and just stops when they differ."""
    endpoint, clock = make()
    for console_id in range(5):
        payload = struct.pack("<BBxxI", 1, 4, console_id) + bytes(
            (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
        peer = ("10.0.0.66", 5000 + console_id)
        reply = endpoint.datagram_received(
            wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload), peer)
        assert reply is not None
        bmc_id = struct.unpack_from("<I", wire.parse_v20(reply).payload, 8)[0]
        rakp1 = struct.pack("<BxxxI", 2, bmc_id) + bytes(16) + bytes((4, 0, 0, 5)) + b"admin"
        assert endpoint.datagram_received(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, rakp1),
                                          peer) is not None
        clock.now += HALF_OPEN_TIMEOUT + 0.1
        endpoint.expire_sessions()
    assert endpoint.node.lockout.is_locked("admin", "10.0.0.66")


def test_lan_parameter_26_reports_the_lockout() -> None:
    endpoint, _ = make()
    console = _login(endpoint, "10.0.0.1")
    assert isinstance(console, Console)
    code, data = console.call(0x0C, 0x02, bytes((1, 26, 0, 0)))  # Get LAN Config, param 26
    assert code == 0
    assert data[1:] == struct.pack("<BBHH", 0, 5, 6, 6)  # threshold 5, 60 s, 60 s


def _redfish(node, source: str):  # type: ignore[no-untyped-def]
    from redfish import NODE_ENVIRON_KEY
    from redfish.app import create_app

    client = create_app().test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    client.environ_base["REMOTE_ADDR"] = source
    return client


def test_redfish_wrong_passwords_lock_out_their_source_only() -> None:
    endpoint, _ = make()
    node = endpoint.node
    attacker, owner = _redfish(node, "10.0.0.66"), _redfish(node, "10.0.0.1")
    system = "/redfish/v1/Systems"
    for _ in range(5):
        assert attacker.get(system, auth=("admin", "wrong")).status_code == 401
    assert attacker.get(system, auth=("admin", "password")).status_code == 401  # locked out
    assert owner.get(system, auth=("admin", "password")).status_code == 200
    # the same lockout holds for IPMI from that source, not from the owner's
    assert _login(endpoint, "10.0.0.66") == 0x0D
    assert isinstance(_login(endpoint, "10.0.0.1", console_id=3), Console)


def test_a_password_change_ends_the_sessions_opened_before_it() -> None:
    """Whoever knew the old password is out at once, over IPMI and Redfish."""
    endpoint, _ = make()
    node = endpoint.node
    console = _login(endpoint, "10.0.0.1")
    assert isinstance(console, Console)
    assert console.call(0x06, 0x01) is not None  # Get Device ID: the session works
    client = _redfish(node, "10.0.0.1")
    login = client.post("/redfish/v1/SessionService/Sessions",
                        json={"UserName": "admin", "Password": "password"})
    token = login.headers["X-Auth-Token"]
    assert client.get("/redfish/v1/Systems", headers={"X-Auth-Token": token}).status_code == 200
    admin = node.users.by_name("admin")
    assert admin is not None
    node.users.set_password(admin.user_id, "changed")
    assert console.call(0x06, 0x01) is None  # the IPMI session has ended
    assert client.get("/redfish/v1/Systems",
                      headers={"X-Auth-Token": token}).status_code == 401
    assert isinstance(_login(endpoint, "10.0.0.1", password="changed", console_id=9), Console)
