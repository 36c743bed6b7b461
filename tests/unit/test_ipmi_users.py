"""User, channel, LAN, chassis and controller commands, driven through their handlers (no sockets).

Handlers are called with a `Context` the way the endpoint calls them; completion codes come out
as `IpmiError`. The user store is checked to be the one Redfish reads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.base import PowerState
from backends.memory import MemoryBackend
from bmc.node import IdentifyState, Node, PowerAction, PowerRestorePolicy, RestartCause
from bmc.users import Privilege, UserStore
from ipmi.commands import (
    NETFN_APP,
    NETFN_CHASSIS,
    NETFN_TRANSPORT,
    Context,
    IpmiError,
    load_all,
)
from ipmi.endpoint import BmcEndpoint
from ipmi.session import Session, Stage

PEER = ("127.0.0.1", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(power_on: bool = False) -> tuple[BmcEndpoint, Clock]:
    clock = Clock()
    node = Node("n1", MemoryBackend(power_on=power_on))
    node.clock = clock
    node.users.add("admin", "password")  # user ID 2
    endpoint = BmcEndpoint(node, clock=clock, local_address=("192.0.2.7", 6230))
    return endpoint, clock


def call(endpoint: BmcEndpoint, netfn: int, cmd: int, data: bytes = b"") -> bytes:
    """The handler's response data; raises IpmiError with its completion code."""
    entry = endpoint.commands[(netfn, cmd)]
    return entry.handler(Context(endpoint.node, data, None, endpoint, netfn, cmd, PEER))


def cc(endpoint: BmcEndpoint, netfn: int, cmd: int, data: bytes = b"") -> int:
    try:
        call(endpoint, netfn, cmd, data)
    except IpmiError as exc:
        return exc.code
    return 0


def name16(name: str) -> bytes:
    return name.encode().ljust(16, b"\x00")


def app(endpoint: BmcEndpoint, cmd: int, data: bytes = b"") -> bytes:
    return call(endpoint, NETFN_APP, cmd, data)


# -- the user store ---------------------------------------------------------------------------
def test_a_slot_named_over_ipmi_starts_disabled_with_no_access() -> None:
    users = UserStore()
    users.add("admin", "password")
    user = users.set_name(3, "bob")
    assert (user.enabled, user.privilege, user.password) == (False, Privilege.NO_ACCESS, "")
    assert [u.name for u in users.all()] == ["admin", "bob"]


def test_nameless_slots_are_no_accounts_and_cannot_be_enabled() -> None:
    users = UserStore()
    users.set_password(5, "secret")  # IPMI may set the password before the name
    assert users.slot(5) is not None
    assert users.by_id(5) is None and users.all() == [] and users.by_name("") is None
    with pytest.raises(ValueError):
        users.set_enabled(5, True)
    assert users.add("carol", "pw").user_id == 2
    assert users.add("dave", "pw", user_id=5).user_id == 5  # a nameless slot is free


def test_clearing_a_name_disables_the_user_and_hides_it() -> None:
    users = UserStore()
    users.add("admin", "password", user_id=2)
    users.set_name(2, "")
    assert users.authenticate("admin", "password") is None
    assert users.by_id(2) is None and not users.slot(2).enabled  # type: ignore[union-attr]


def test_the_null_user_and_out_of_range_ids_are_refused() -> None:
    users = UserStore()
    for change in (lambda: users.set_name(1, "x"), lambda: users.set_password(1, "x"),
                   lambda: users.set_enabled(17, False), lambda: users.set_name(0, "x")):
        with pytest.raises(ValueError):
            change()
    users.add("admin", "password")
    with pytest.raises(ValueError):
        users.set_name(3, "admin")  # a name is unique
    with pytest.raises(ValueError):
        users.set_password(2, "x" * 21)


def test_a_password_set_in_the_store_is_what_redfish_checks() -> None:
    users = UserStore()
    users.add("admin", "password")
    users.set_password(2, "newpass")
    assert users.authenticate("admin", "newpass") is not None
    assert users.authenticate("admin", "password") is None


# -- user commands ----------------------------------------------------------------------------
def test_user_id_1_is_the_null_user_disabled_with_no_access() -> None:
    endpoint, _ = make()
    assert app(endpoint, 0x46, b"\x01") == b"\x00" * 16
    assert app(endpoint, 0x44, b"\x01\x01") == bytes((16, 0x80 | 1, 1, 0x0F))
    assert app(endpoint, 0x44, b"\x0e\x02") == bytes((16, 0x40 | 1, 1, 0x14))
    assert app(endpoint, 0x46, b"\x02") == name16("admin")
    assert app(endpoint, 0x46, b"\x09") == b"\x00" * 16  # never used: empty, no error
    # the null user cannot be named, given a password or enabled; disabling it is a no-op
    assert cc(endpoint, NETFN_APP, 0x45, b"\x01" + name16("x")) == 0xCC
    assert cc(endpoint, NETFN_APP, 0x47, b"\x01\x01") == 0xCC
    assert cc(endpoint, NETFN_APP, 0x47, b"\x01\x02" + b"x" * 16) == 0xCC
    assert cc(endpoint, NETFN_APP, 0x47, b"\x01\x00") == 0
    assert endpoint.node.users.slot(1) is None


def test_create_a_user_like_ipmitool_does() -> None:
    endpoint, _ = make()
    users = endpoint.node.users
    app(endpoint, 0x45, b"\x03" + name16("bob"))
    assert cc(endpoint, NETFN_APP, 0x47, b"\x03\x01" + b"\x00" * 16) == 0  # enable
    app(endpoint, 0x47, b"\x03\x02" + b"secret".ljust(16, b"\x00"))
    app(endpoint, 0x43, b"\x01\x03\x04\x00")  # user priv 3 4 1: privilege only
    bob = users.by_name("bob")
    assert bob is not None and bob.enabled and bob.privilege is Privilege.ADMINISTRATOR
    assert bob.may_use_ipmi and users.authenticate("bob", "secret") is bob
    assert app(endpoint, 0x44, b"\x01\x03")[1:] == bytes((0x40 | 2, 1, 0x14))
    assert app(endpoint, 0x4D, b"\x01\x03") == b"\x02\x00\x00\x00"  # SOL allowed
    app(endpoint, 0x47, b"\x03\x00" + b"\x00" * 16)  # disable
    assert not bob.may_use_ipmi and users.authenticate("bob", "secret") is None
    app(endpoint, 0x43, b"\xa1\x03\x03")  # change bits: link auth on, IPMI messaging off
    assert (bob.link_auth, bob.ipmi_messaging, bob.privilege) == (True, False, Privilege.OPERATOR)


def test_test_password_16_and_20_byte_forms() -> None:
    endpoint, _ = make()
    ok16 = b"\x02\x03" + b"password".ljust(16, b"\x00")
    assert cc(endpoint, NETFN_APP, 0x47, ok16) == 0
    assert cc(endpoint, NETFN_APP, 0x47, b"\x82\x03" + b"password".ljust(20, b"\x00")) == 0
    assert cc(endpoint, NETFN_APP, 0x47, b"\x02\x03" + b"wrong".ljust(16, b"\x00")) == 0x80
    app(endpoint, 0x47, b"\x82\x02" + b"a" * 18 + b"\x00\x00")  # an 18-byte password
    assert endpoint.node.users.authenticate("admin", "a" * 18) is not None
    assert cc(endpoint, NETFN_APP, 0x47, b"\x02\x03" + b"a" * 16) == 0x81  # wrong size
    assert cc(endpoint, NETFN_APP, 0x47, b"\x82\x03" + b"a" * 18 + b"\x00\x00") == 0


@pytest.mark.parametrize(("cmd", "data", "code"), [
    (0x47, b"\x03\x02" + b"x" * 20, 0xC7),  # 16-byte form with 20 bytes
    (0x47, b"\x83\x02" + b"x" * 16, 0xC7),  # 20-byte form with 16 bytes
    (0x47, b"\x03\x01" + b"x" * 5, 0xC7),
    (0x47, b"\x05\x01" + b"\x00" * 16, 0xD5),  # enabling a slot without a name
    (0x47, b"\x00\x02" + b"x" * 16, 0xCC),  # user ID 0
    (0x47, b"\x02\x02" + b"\xff" * 16, 0xCC),  # not UTF-8
    (0x45, b"\x03" + name16("admin"), 0xCC),  # the name is taken
    (0x45, b"\x03" + b"bo\x00b".ljust(16, b"\x00"), 0xCC),  # NUL inside the name
    (0x45, b"\x03" + b"bob", 0xC7),
    (0x45, b"\x11" + name16("bob"), 0xCC),  # user ID 17
    (0x43, b"\x01\x03\x00", 0xCC),  # privilege 0 is reserved
    (0x43, b"\x01\x03\x07", 0xCC),
    (0x43, b"\x01\x01\x04", 0xCC),  # the null user
    (0x43, b"\x05\x03\x04", 0xCC),  # not our channel
    (0x44, b"\x01\x00", 0xCC),
    (0x44, b"\x01", 0xC7),
    (0x46, b"\x11", 0xCC),
])
def test_malformed_user_requests_get_their_completion_code(cmd: int, data: bytes,
                                                           code: int) -> None:
    endpoint, _ = make()
    assert cc(endpoint, NETFN_APP, cmd, data) == code


# -- channel and LAN configuration ------------------------------------------------------------
def test_channel_info_names_lan_channel_1_multi_session() -> None:
    endpoint, clock = make()
    endpoint.sessions[7] = Session(7, 8, PEER, Stage.ACTIVE, clock())
    endpoint.sessions[9] = Session(9, 10, PEER, Stage.OPENED, clock())  # not active yet
    info = app(endpoint, 0x42, b"\x0e")
    assert info == bytes((1, 0x04, 0x01, 0x80 | 1, 0xF2, 0x1B, 0x00, 0, 0))
    assert app(endpoint, 0x42, b"\x01") == info
    assert cc(endpoint, NETFN_APP, 0x42, b"\x02") == 0xCC
    assert app(endpoint, 0x41, b"\x01\x80") == bytes((0x22, 0x04))
    assert cc(endpoint, NETFN_APP, 0x41, b"\x01\x00") == 0xCC


def lan(endpoint: BmcEndpoint, param: int, selector: int = 0) -> bytes:
    reply = call(endpoint, NETFN_TRANSPORT, 0x02, bytes((1, param, selector, 0)))
    assert reply[0] == 0x11
    return reply[1:]


def test_lan_configuration_describes_where_the_node_listens() -> None:
    endpoint, _ = make()
    assert lan(endpoint, 3) == bytes((192, 0, 2, 7))
    assert lan(endpoint, 4) == b"\x01"  # static
    assert lan(endpoint, 6) == b"\xff\xff\xff\x00"
    assert lan(endpoint, 8) == struct.pack("<H", 6230)
    mac = lan(endpoint, 5)
    assert mac.hex(":") == endpoint.node.bmc_mac
    assert mac[0] & 0x03 == 0x02  # locally administered, unicast
    assert Node("n1", MemoryBackend()).bmc_mac == endpoint.node.bmc_mac  # stable per node
    assert Node("n2", MemoryBackend()).bmc_mac != endpoint.node.bmc_mac
    assert lan(endpoint, 1) == b"\x14"  # supported: MD5, straight password
    assert lan(endpoint, 2) == b"\x04" * 5  # enabled: MD5 only (password_auth is off)
    assert lan(endpoint, 20) == b"\x00\x00"  # VLAN off
    assert lan(endpoint, 22) == b"\x02" and lan(endpoint, 23) == b"\x00\x11\x03"
    assert lan(endpoint, 24) == bytes((0, 0, 0x40, 0, 0, 0, 0, 0, 0))  # suite 3: admin
    assert call(endpoint, NETFN_TRANSPORT, 0x02, b"\x81\x03\x00\x00") == b"\x11"
    assert cc(endpoint, NETFN_TRANSPORT, 0x02, b"\x01\x37\x00\x00") == 0x80  # IPv6
    assert cc(endpoint, NETFN_TRANSPORT, 0x02, b"\x01\x13\x01\x00") == 0xC9
    assert cc(endpoint, NETFN_TRANSPORT, 0x02, b"\x01\x03") == 0xC7


def test_lan_configuration_is_read_only_except_set_in_progress() -> None:
    endpoint, _ = make()
    assert cc(endpoint, NETFN_TRANSPORT, 0x01, b"\x01\x03\x0a\x00\x00\x05") == 0x82
    assert cc(endpoint, NETFN_TRANSPORT, 0x01, b"\x01\x40\x00") == 0x80
    call(endpoint, NETFN_TRANSPORT, 0x01, b"\x01\x00\x01")  # set in progress
    assert lan(endpoint, 0) == b"\x01"
    call(endpoint, NETFN_TRANSPORT, 0x01, b"\x01\x00\x02")  # commit: back to complete
    assert lan(endpoint, 0) == b"\x00"
    assert lan(endpoint, 3) == bytes((192, 0, 2, 7))


# -- chassis ----------------------------------------------------------------------------------
def chassis(endpoint: BmcEndpoint, cmd: int, data: bytes = b"") -> bytes:
    return call(endpoint, NETFN_CHASSIS, cmd, data)


def test_identify_interval_force_and_off_show_in_chassis_status() -> None:
    endpoint, clock = make()
    node = endpoint.node
    assert chassis(endpoint, 0x01)[2] == 0x40  # supported, off
    chassis(endpoint, 0x04)
    assert node.identify.state is IdentifyState.TIMED and node.identify.remaining == 15
    assert chassis(endpoint, 0x01)[2] == 0x50
    clock.now += 15.5
    assert node.identify.state is IdentifyState.OFF
    chassis(endpoint, 0x04, b"\x0a\x01")  # force: on until turned off
    clock.now += 1e6
    assert node.identify.state is IdentifyState.ON and chassis(endpoint, 0x01)[2] == 0x60
    chassis(endpoint, 0x04, b"\x00")
    assert node.identify.state is IdentifyState.OFF
    node.set_identify(None)  # Redfish IndicatorLED "Lit"
    assert node.identify.state.value == "Lit" and node.identify.active
    assert cc(endpoint, NETFN_CHASSIS, 0x04, b"\x01\x00\x00") == 0xC7


def test_power_restore_policy_round_trip() -> None:
    endpoint, _ = make()
    node = endpoint.node
    for code, policy in ((2, PowerRestorePolicy.ALWAYS_ON), (1, PowerRestorePolicy.LAST_STATE),
                         (0, PowerRestorePolicy.ALWAYS_OFF)):
        assert chassis(endpoint, 0x06, bytes((code,))) == b"\x07"
        assert node.power_restore_policy is policy
        assert (chassis(endpoint, 0x01)[0] >> 5) & 0x03 == code
    node.set_power_restore_policy(PowerRestorePolicy.ALWAYS_ON)  # as Redfish would
    assert chassis(endpoint, 0x06, b"\x03") == b"\x07"  # "no change": just the list
    assert node.power_restore_policy is PowerRestorePolicy.ALWAYS_ON
    assert cc(endpoint, NETFN_CHASSIS, 0x06, b"\x04") == 0xCC


def test_restart_cause_follows_what_really_started_the_server() -> None:
    endpoint, _ = make()
    node = endpoint.node
    assert chassis(endpoint, 0x07) == b"\x00\x00"  # nothing yet
    chassis(endpoint, 0x02, b"\x01")  # chassis control: power up
    assert node.settle()  # answered at once, carried out on the node's worker
    assert chassis(endpoint, 0x07) == b"\x01\x01"
    assert chassis(endpoint, 0x01)[1] == 0x10  # last power event: on by command
    node.power(PowerAction.FORCE_OFF)
    node.power(PowerAction.PUSH_POWER_BUTTON)  # Redfish PushPowerButton from off
    assert node.restart_cause is RestartCause.POWER_BUTTON
    assert chassis(endpoint, 0x07) == b"\x03\x00"
    node.power(PowerAction.GRACEFUL_SHUTDOWN)  # not a start: the cause stays
    assert node.restart_cause is RestartCause.POWER_BUTTON


# -- controller: watchdog, global enables, resets ---------------------------------------------
def test_watchdog_counts_down_and_fires_its_action() -> None:
    endpoint, clock = make(power_on=True)
    node = endpoint.node
    node.power(PowerAction.FORCE_OFF)
    node.power(PowerAction.ON)
    assert cc(endpoint, NETFN_APP, 0x22) == 0x80  # reset before any set
    app(endpoint, 0x24, b"\x04\x01\x00\x00\x64\x00")  # SMS/OS, hard reset, 10.0 s
    got = app(endpoint, 0x25)
    assert got[0] == 0x04 and struct.unpack("<HH", got[4:]) == (100, 100)  # stopped
    app(endpoint, 0x22)  # start
    clock.now += 4
    got = app(endpoint, 0x25)
    assert got[0] & 0x40 and struct.unpack("<H", got[6:])[0] == 60
    clock.now += 7
    endpoint.expire_sessions()  # the server's periodic sweep
    assert node.settle()
    assert node.restart_cause is RestartCause.WATCHDOG
    assert node.power_state is PowerState.ON
    got = app(endpoint, 0x25)
    assert not got[0] & 0x40 and got[3] == 0x10  # stopped; SMS/OS expiration flag
    app(endpoint, 0x24, b"\x04\x00\x00\x10\x0a\x00")  # clear the flag
    assert app(endpoint, 0x25)[3] == 0
    assert cc(endpoint, NETFN_APP, 0x24, b"\x00\x00\x00\x00\x0a\x00") == 0xCC  # use 0
    assert cc(endpoint, NETFN_APP, 0x24, b"\x04\x07\x00\x00\x0a\x00") == 0xCC
    assert cc(endpoint, NETFN_APP, 0x24, b"\x04") == 0xC7


def test_global_enables_and_cold_reset_defaults() -> None:
    endpoint, _ = make()
    assert app(endpoint, 0x2F) == b"\x0c"
    app(endpoint, 0x2E, b"\x08")
    assert app(endpoint, 0x2F) == b"\x08"
    assert cc(endpoint, NETFN_APP, 0x2E, b"\x10") == 0xCC  # reserved bit
    app(endpoint, 0x02)  # cold reset: applied by the endpoint after the reply
    assert app(endpoint, 0x2F) == b"\x08"
    endpoint.datagram_received(b"", PEER)  # any datagram: the reply is done, reset now
    assert app(endpoint, 0x2F) == b"\x0c"


#: the handlers of this work: user, channel/LAN, chassis, controller and session commands
OWN_MODULES = {"ipmi.commands.users", "ipmi.commands.channel", "ipmi.commands.chassis",
               "ipmi.commands.mc", "ipmi.commands.session", "ipmi.commands.app"}
OWN_COMMANDS = sorted(k for k, c in load_all().items() if c.handler.__module__ in OWN_MODULES)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OWN_COMMANDS), st.binary(max_size=30))
def test_handlers_answer_any_data_with_a_completion_code(key: tuple[int, int],
                                                         data: bytes) -> None:
    endpoint, _ = make()
    endpoint.request_reset = lambda cold: None  # type: ignore[method-assign]
    handler: Callable[[Context], bytes] = endpoint.commands[key].handler
    try:
        reply = handler(Context(endpoint.node, data, None, endpoint, key[0], key[1], PEER))
    except IpmiError as exc:
        assert 0x80 <= exc.code <= 0xFF
    else:
        assert isinstance(reply, bytes)
