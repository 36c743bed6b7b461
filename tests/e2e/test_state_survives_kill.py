"""`serve --state-dir`: every change a real client was told succeeded is still there after the
emulator is SIGKILLed mid-stream and started again on the same state directory."""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from conftest import Emulator, EmulatorNode, Launcher
from e2e_helpers import ipmitool_as, run

TIMEOUT = 10
ACCOUNTS = "/redfish/v1/AccountService/Accounts"
BOOT_TEXT = {"pxe": "Force PXE", "disk": "Force Boot from default Hard-Drive",
             "cdrom": "Force Boot from CD/DVD"}
#: changes acknowledged before the kill (the stream goes on while the kill lands): two
#: rounds of every kind
KILL_AFTER = 24
STREAM_SECONDS = 60
#: a 16-byte system event record: temperature sensor 30h, upper critical going high
ADD_SEL = ["0", "0", "2", "0", "0", "0", "0", "0x20", "0", "4", "0x01", "0x30", "0x01",
           "0x09", "0xff", "0xff"]


class Stream:
    """Changes made one after another by real clients; for each kind of state, the values
    acknowledged (the client reported success) and the one in flight when the stream broke."""

    def __init__(self) -> None:
        self.acked: dict[str, list[str]] = {}
        self.in_flight: dict[str, str] = {}
        self.count = 0
        self.sel_ids: list[int] = []  # acknowledged Add SEL Entry record IDs
        self.stopped = threading.Event()

    def change(self, kind: str, value: str, do: Callable[[], bool]) -> bool:
        self.in_flight = {kind: value}
        if not do():
            return False
        self.acked.setdefault(kind, []).append(value)
        self.in_flight = {}
        self.count += 1
        return True

    def accepted(self, kind: str) -> set[str]:
        """What the state may be after the restart: the last acknowledged value, or the one
        the emulator may have saved just before the kill, without the client hearing so."""
        values = {self.acked[kind][-1]} if kind in self.acked else set()
        return values | ({self.in_flight[kind]} if kind in self.in_flight else set())


def _add_sel(bmc: Emulator, node: EmulatorNode, stream: Stream) -> bool:
    """Add SEL Entry (a temperature event); remember the record ID the BMC answered."""
    added = run(bmc.ipmitool(node, "raw", "0x0a", "0x44", *ADD_SEL), timeout=30)
    if added.returncode != 0:
        return False
    low, high = (int(b, 16) for b in added.stdout.split())
    stream.sel_ids.append(low | high << 8)
    return True


def _ipmi_ok(command: list[str]) -> bool:
    return run(command, timeout=30).returncode == 0


MEDIA = "/redfish/v1/Managers/BMC/VirtualMedia/Cd"
SUBSCRIPTIONS = "/redfish/v1/EventService/Subscriptions"
#: ipmitool `sol set non-volatile-bit-rate` values, and how `sol info` shows them
SOL_RATES = ["9.6", "19.2", "38.4", "57.6", "115.2"]


class Receiver:
    """An event receiver on loopback: the Contexts of the events POSTed to it."""

    def __init__(self) -> None:
        self.contexts: list[str | None] = []
        contexts = self.contexts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                contexts.append(json.loads(body).get("Context"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _post_ok(uri: str, auth: tuple[str, str], body: dict[str, Any], status: int,
             created: list[str] | None = None) -> bool:
    try:
        answer = requests.post(uri, auth=auth, json=body, timeout=TIMEOUT)
    except requests.RequestException:
        return False
    if created is not None and answer.status_code == status:
        created.append(answer.headers["Location"])
    return answer.status_code == status


def _delete_ok(uri: str, auth: tuple[str, str]) -> bool:
    try:
        return requests.delete(uri, auth=auth, timeout=TIMEOUT).status_code == 204
    except requests.RequestException:
        return False


def test_acknowledged_changes_survive_sigkill(emulator_factory: Launcher, tmp_path: Path,
                                              measured: Callable[[str], None]) -> None:
    state_dir = tmp_path / "state"
    args = ["--state-dir", str(state_dir)]
    bmc = emulator_factory(nodes=[{"name": "a"}, {"name": "b"}], args=args)
    a = bmc.nodes[0]
    admin = (bmc.username, bmc.password)
    # an IPMI user and a Redfish account whose passwords the stream changes
    for command in (["user", "set", "name", "3", "op"], ["user", "set", "password", "3", "p0"],
                    ["user", "priv", "3", "4", "1"], ["user", "enable", "3"]):
        assert run(bmc.ipmitool(a, *command)).returncode == 0
    created = requests.post(f"{a.redfish_url}{ACCOUNTS}", auth=admin, timeout=TIMEOUT,
                            json={"UserName": "rf", "Password": "rfpass-0", "RoleId": "Operator"})
    assert created.status_code == 201, created.text
    rf_uri = a.redfish_url + created.headers["Location"]

    receiver = Receiver()
    # one subscription made before the stream: after the restart it must get events at once,
    # before any Redfish request brings the event service up
    assert _post_ok(f"{a.redfish_url}{SUBSCRIPTIONS}", admin,
                    {"Destination": receiver.url, "Context": "kept"}, 201)
    stream = Stream()
    made: list[str] = []  # Locations of the stream's subscriptions

    def subscription(i: int) -> bool:
        """Odd rounds make one, even rounds delete it: at most one of the stream's lives."""
        if i % 2:
            return _post_ok(f"{a.redfish_url}{SUBSCRIPTIONS}", admin,
                            {"Destination": receiver.url, "Context": f"ctx-{i}"}, 201, made)
        return _delete_ok(a.redfish_url + made[-1], admin)

    def changes() -> None:
        devices = list(BOOT_TEXT)
        for i in range(1, 1000):
            if stream.stopped.is_set():
                return
            steps = [
                ("op-password", f"p{i}", lambda i=i: _ipmi_ok(
                    bmc.ipmitool(a, "user", "set", "password", "3", f"p{i}"))),
                ("bootdev", devices[i % 3], lambda i=i: _ipmi_ok(
                    # persistent: the stream's power-ons do not consume it (a one-time
                    # override's consumption is in tests/unit/test_state.py)
                    bmc.ipmitool(a, "chassis", "bootdev", devices[i % 3],
                                 "options=persistent,efiboot"))),
                ("rf-password", f"rfpass-{i}", lambda i=i: _patch_ok(rf_uri, admin,
                                                               {"Password": f"rfpass-{i}"})),
                ("power", "on" if i % 2 else "off", lambda i=i: _ipmi_ok(
                    bmc.ipmitool(a, "chassis", "power", "on" if i % 2 else "off"))),
                ("sel", "", lambda: _add_sel(bmc, a, stream)),
                ("bios", ["Enabled", "Disabled"][i % 2], lambda i=i: _patch_ok(
                    f"{a.redfish_url}/redfish/v1/Systems/a/Bios/Settings", admin,
                    {"Attributes": {"ProcTurboMode": ["Enabled", "Disabled"][i % 2]}})),
                ("media", f"http://192.0.2.1/img-{i}.iso" if i % 2 else "ejected",
                 lambda i=i: _post_ok(
                     f"{a.redfish_url}{MEDIA}/Actions/VirtualMedia.InsertMedia", admin,
                     {"Image": f"http://192.0.2.1/img-{i}.iso", "WriteProtected": False}, 204)
                 if i % 2 else _post_ok(
                     f"{a.redfish_url}{MEDIA}/Actions/VirtualMedia.EjectMedia", admin, {}, 204)),
                ("sol-rate", SOL_RATES[i % 5], lambda i=i: _ipmi_ok(
                    bmc.ipmitool(a, "sol", "set", "non-volatile-bit-rate", SOL_RATES[i % 5],
                                 "1"))),
                # threshold (high: the checks below try a wrong password or two), no audit
                # event, reset after 60 s, lock out for 120 s
                ("lockout", str(i % 9 + 10), lambda i=i: _ipmi_ok(
                    bmc.ipmitool(a, "lan", "set", "1", "bad_pass_thresh", str(i % 9 + 10), "0",
                                 "6", "12"))),
                ("subscription", f"ctx-{i}" if i % 2 else "none",
                 lambda i=i: subscription(i)),
                # the persistent UEFI override of "bootdev" lets Secure Boot be enabled
                ("secure-boot", ["false", "true"][i % 2], lambda i=i: _patch_ok(
                    f"{a.redfish_url}/redfish/v1/Systems/a/SecureBoot", admin,
                    {"SecureBootEnable": bool(i % 2)})),
            ]
            for kind, value, do in steps:
                if not stream.change(kind, value, do):
                    return  # the emulator is gone: nothing after this was acknowledged

    worker = threading.Thread(target=changes, daemon=True)
    worker.start()
    deadline = time.monotonic() + STREAM_SECONDS
    while stream.count < KILL_AFTER and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.01)
    assert stream.count >= KILL_AFTER, f"only {stream.count} changes acknowledged"
    # mid-stream, at a random point of the next change: before the emulator sees it, while it
    # carries it out, or after it answered but before the client recorded the answer
    delay = random.uniform(0, 0.3)
    time.sleep(delay)
    os.kill(bmc.process.pid, signal.SIGKILL)
    bmc.process.wait(TIMEOUT)
    bmc.stopped = True
    worker.join(60)
    stream.stopped.set()
    assert not worker.is_alive()
    acked = sum(len(v) for v in stream.acked.values())
    assert acked >= KILL_AFTER

    for path in state_dir.iterdir():  # the database holds passwords: only its owner reads it
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    again = restart(emulator_factory, bmc, args)
    a = again.nodes[0]
    # 1) users: the IPMI user's and the Redfish account's last acknowledged passwords
    logins = {p for p in stream.accepted("op-password") if _ipmi_ok(ipmitool_as(
        a, "op", p, "chassis", "power", "status"))}
    assert logins, f"op cannot log in with any of {stream.accepted('op-password')}"
    accounts = {p for p in stream.accepted("rf-password") if requests.get(
        f"{a.redfish_url}{ACCOUNTS}", auth=("rf", p), timeout=TIMEOUT).status_code == 200}
    assert accounts, f"rf cannot log in with any of {stream.accepted('rf-password')}"
    names = _account_names(a.redfish_url, admin)
    assert {"admin", "op", "rf"} <= names
    # 2) the boot override, 3) the memory node's power
    params = run(again.ipmitool(a, "chassis", "bootparam", "get", "5")).stdout
    assert any(BOOT_TEXT[d] in params for d in stream.accepted("bootdev")), params
    assert "Options apply to all future boots" in params
    if "power" in stream.acked:
        status = run(again.ipmitool(a, "chassis", "power", "status")).stdout
        assert status.split()[-1] in stream.accepted("power"), status
    # 4) the SEL: every record a client was given the ID of
    assert stream.sel_ids
    for record_id in stream.sel_ids:
        got = run(again.ipmitool(a, "sel", "get", str(record_id)))
        assert got.returncode == 0 and "Temperature" in got.stdout, (record_id, got)
    # 5) BIOS: the value a boot takes (pending until the stream's next power-on applied it)
    if "bios" in stream.acked:
        bios = f"{a.redfish_url}/redfish/v1/Systems/a/Bios"
        current = requests.get(bios, auth=admin, timeout=TIMEOUT).json()["Attributes"]
        pending = requests.get(f"{bios}/Settings", auth=admin, timeout=TIMEOUT).json()
        effective = pending.get("Attributes", {}).get("ProcTurboMode",
                                                      current["ProcTurboMode"])
        assert effective in stream.accepted("bios"), (current, pending)
    # 6) virtual media: the image last inserted (or none, after an eject)
    cd = requests.get(f"{a.redfish_url}{MEDIA}", auth=admin, timeout=TIMEOUT).json()
    shown = cd["Image"] if cd["Inserted"] else "ejected"
    assert shown in stream.accepted("media"), (cd, stream.accepted("media"))
    assert cd["WriteProtected"] is (shown == "ejected"), cd  # an eject resets it
    # 7) SOL and LAN configuration (ipmitool's own reading of them)
    sol = run(again.ipmitool(a, "sol", "info", "1")).stdout
    rate = next(line for line in sol.splitlines() if line.startswith("Non-Volatile Bit Rate"))
    assert rate.split(":")[1].strip() in stream.accepted("sol-rate"), sol
    lan = run(again.ipmitool(a, "lan", "print", "1")).stdout
    threshold = next(line for line in lan.splitlines() if line.startswith("Bad Password Thresh"))
    assert threshold.split(":")[1].strip() in stream.accepted("lockout"), lan
    # 8) Secure Boot
    secure = requests.get(f"{a.redfish_url}/redfish/v1/Systems/a/SecureBoot", auth=admin,
                          timeout=TIMEOUT).json()
    assert str(secure["SecureBootEnable"]).lower() in stream.accepted("secure-boot"), secure
    # 9) event subscriptions: the kept one delivers an event caused over IPMI (no Redfish
    # request has been made yet), and the stream's one is there or not as acknowledged
    receiver.contexts.clear()
    power = run(again.ipmitool(a, "chassis", "power", "status")).stdout.split()[-1]
    assert _ipmi_ok(again.ipmitool(a, "chassis", "power", "off" if power == "on" else "on"))
    deadline = time.monotonic() + TIMEOUT
    while "kept" not in receiver.contexts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "kept" in receiver.contexts, receiver.contexts
    listing = requests.get(f"{a.redfish_url}{SUBSCRIPTIONS}", auth=admin, timeout=TIMEOUT)
    contexts = {requests.get(a.redfish_url + m["@odata.id"], auth=admin,
                             timeout=TIMEOUT).json()["Context"]
                for m in listing.json()["Members"]}
    assert "kept" in contexts
    live = contexts - {"kept"}
    assert len(live) <= 1 and (live or {"none"}) <= stream.accepted("subscription"), (
        contexts, stream.accepted("subscription"))
    receiver.close()
    measured(f"state dir: {acked} acknowledged changes before SIGKILL "
             f"({', '.join(f'{k} {len(v)}' for k, v in stream.acked.items())}), "
             f"killed {delay * 1000:.0f} ms after the {KILL_AFTER}th, in flight: "
             f"{stream.in_flight or 'none'}; all there after restart")
    # the other node's state is its own: untouched
    b = again.nodes[1]
    assert "No override" in run(again.ipmitool(b, "chassis", "bootparam", "get", "5")).stdout
    assert _account_names(b.redfish_url, admin) == {"admin"}
    assert run(again.ipmitool(b, "chassis", "power", "status")).stdout.strip() \
        == "Chassis Power is off"


def restart(launcher: Launcher, old: Emulator, args: list[str]) -> Emulator:
    """The same config and ports, the same state dir: a fresh process."""
    assert old.config_path is not None
    return launcher.launch(["--config", str(old.config_path), "--log-level", "debug", *args],
                           old.nodes, old.username, old.password, config_path=old.config_path)


def _patch_ok(uri: str, auth: tuple[str, str], body: dict[str, Any]) -> bool:
    try:
        return requests.patch(uri, auth=auth, json=body, timeout=TIMEOUT).status_code == 200
    except requests.RequestException:
        return False


def _account_names(url: str, auth: tuple[str, str]) -> set[str]:
    listing = requests.get(f"{url}{ACCOUNTS}", auth=auth, timeout=TIMEOUT)
    assert listing.status_code == 200, listing.text
    names = set()
    for member in listing.json()["Members"]:
        account = requests.get(url + member["@odata.id"], auth=auth, timeout=TIMEOUT).json()
        names.add(account["UserName"])
    return names


def test_corrupt_state_stops_the_start_naming_the_file(emulator_factory: Launcher,
                                                        tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.sqlite3").write_bytes(b"this is not a database" * 100)
    config = emulator_factory.write_config({"nodes": [{"name": "a", "backend": {
        "type": "memory"}, "ipmi": {"port": emulator_factory.free_port("udp")},
        "redfish": {"port": emulator_factory.free_port("tcp")}}]})
    result = emulator_factory.run_to_exit(["--config", str(config), "--state-dir",
                                           str(state_dir)])
    assert result.returncode == 1, result.stderr
    assert f"state file {state_dir / 'state.sqlite3'}" in result.stderr
    assert (state_dir / "state.sqlite3").read_bytes() == b"this is not a database" * 100
