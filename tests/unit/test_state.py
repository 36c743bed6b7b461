"""The state store (bmc/state.py): round trips through the features, and refused bad files."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from backends.base import BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.state import FILENAME, StateError, open_store
from bmc.users import Privilege, UserStore


def test_corrupt_database_is_reported_with_its_name_and_kept(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.node("n").save("boot", "override", {"device": "pxe"})
    store.close()
    path = tmp_path / FILENAME
    data = bytearray(path.read_bytes())
    data[0:16] = b"garbage garbage!"  # the SQLite header
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match=str(path)):
        open_store(tmp_path)
    assert path.read_bytes() == bytes(data)  # never reset


def test_corrupt_value_is_reported(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("INSERT INTO state VALUES ('n', 'users', 'table', '{not json')")
    store = open_store(tmp_path)
    with pytest.raises(StateError, match=f"{tmp_path / FILENAME}.*node 'n' users table"):
        UserStore().attach(store.node("n"))


def test_files_are_private(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state")
    store.node("n").save("k", "v", 1)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for path in (tmp_path / "state").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    store.close()


def test_users_survive_and_replace_configured_ones(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    users = UserStore()
    users.add("admin", "password")
    users.attach(store.node("a"))
    users.set_password(2, "changed")
    users.set_name(3, "bob")
    users.set_access(3, privilege=Privilege.OPERATOR)
    users.set_enabled(3, True)
    store.close()

    store = open_store(tmp_path)
    again = UserStore()
    again.add("admin", "password")  # the config's user, as at every start
    again.attach(store.node("a"))
    assert again.authenticate("admin", "changed") is not None
    assert again.authenticate("admin", "password") is None
    bob = again.by_name("bob")
    assert bob is not None and bob.enabled and bob.privilege is Privilege.OPERATOR
    fresh = UserStore()
    fresh.add("admin", "password")
    fresh.attach(store.node("other"))  # keyed by node: another node's table is its own
    assert fresh.authenticate("admin", "password") is not None
    store.close()


def test_boot_override_and_memory_power_survive(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    node = Node("a", MemoryBackend(), state=store.node("a"))
    node.set_boot_override(BootDevice.PXE, persistent=False)
    node.power(PowerAction.ON, timeout=5)
    assert node.boot_override.device is BootDevice.NONE  # consumed by the boot
    assert store.node("a").get("boot", "override")["device"] == "None"  # and saved so
    node.set_boot_override(BootDevice.CDROM, persistent=True, uefi=True)
    node.worker.close()
    store.close()

    store = open_store(tmp_path)
    backend = MemoryBackend()
    again = Node("a", backend, state=store.node("a"))
    assert again.boot_override.device is BootDevice.CDROM
    assert again.boot_override.persistent and again.boot_override.uefi
    assert again.power_state is PowerState.ON and backend.power_state() is PowerState.ON
    again.power(PowerAction.FORCE_OFF, timeout=5)
    again.worker.close()
    store.close()
    store = open_store(tmp_path)
    assert Node("a", MemoryBackend(), state=store.node("a")).power_state is PowerState.OFF
    store.close()


def test_no_store_keeps_todays_behaviour() -> None:
    node = Node("a", MemoryBackend())
    assert node.state is None
    node.set_boot_override(BootDevice.PXE)
    assert node.boot_override.device is BootDevice.PXE


def test_sel_entries_deletes_and_clear_survive(tmp_path: Path) -> None:
    from bmc.sel import SystemEventLog

    store = open_store(tmp_path)
    sel = SystemEventLog(capacity=3)
    sel.attach(store.node("a"))
    records = [sel.add(0x01, n, 0x01, b"\x01\x02\x03", sensor_name=f"s{n}") for n in range(4)]
    sel.delete(records[2].record_id)  # the first was dropped: capacity 3
    sel.set_utc_offset(60)
    store.close()

    store = open_store(tmp_path)
    again = SystemEventLog(capacity=3)
    again.attach(store.node("a"))
    assert [e.raw for e in again.entries()] == [records[1].raw, records[3].raw]
    assert again.entries()[0].sensor_name == "s1"
    assert again.info().overflow and again.utc_offset == 60
    assert again.add(0x01, 9, 0x01, b"").record_id == records[3].record_id + 1
    again.clear()
    store.close()
    store = open_store(tmp_path)
    cleared = SystemEventLog()
    cleared.attach(store.node("a"))
    assert len(cleared.entries()) == 1  # "log cleared", as logged after the erase
    store.close()


def test_node_restores_its_sel_when_built(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    node = Node("a", MemoryBackend(), state=store.node("a"))
    node.power(PowerAction.ON, timeout=5)  # logged in the SEL
    logged = [e.raw for e in node.sel.entries()]
    assert logged
    node.worker.close()
    store.close()
    store = open_store(tmp_path)
    again = Node("a", MemoryBackend(), state=store.node("a"))
    assert [e.raw for e in again.sel.entries()][:len(logged)] == logged
    again.worker.close()
    store.close()


def test_unreadable_sel_row_stops_the_node(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.node("a").save("sel", "meta", {"next_id": "x"})
    with pytest.raises(StateError, match=f"{tmp_path / FILENAME}.*node 'a' SEL"):
        Node("a", MemoryBackend(), state=store.node("a"))  # at start, before it serves
    store.close()


def test_state_dir_from_config_and_flag(tmp_path: Path) -> None:
    from bmc.config import Overrides, default_config, load_config
    from bmc.serve import StartupError, open_state

    path = tmp_path / "config.yaml"
    path.write_text(f"defaults:\n  state_dir: {tmp_path / 'from-file'}\n")
    assert load_config(path).defaults.state_dir == str(tmp_path / "from-file")
    flag = load_config(path, Overrides(state_dir=str(tmp_path / "flag")))
    assert flag.defaults.state_dir == str(tmp_path / "flag")
    assert default_config().defaults.state_dir is None  # off unless given
    assert open_state(default_config()) is None
    store = open_state(flag)
    assert store is not None and store.path == tmp_path / "flag" / FILENAME
    store.close()
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupError, match="state directory .*file"):
        open_state(default_config(Overrides(state_dir=str(tmp_path / "file"))))


def test_bios_settings_pending_and_passwords_survive(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    node = Node("a", MemoryBackend(), state=store.node("a"))
    node.bios.set_pending({"ProcTurboMode": "Disabled"})
    node.power(PowerAction.ON, timeout=5)  # the boot applies it
    node.bios.set_pending({"ProcTurboMode": "Enabled"})
    node.bios.change_password("AdminPassword", "", "bios-pw")
    node.worker.close()
    store.close()

    store = open_store(tmp_path)
    again = Node("a", MemoryBackend(), state=store.node("a"))
    assert "bios" in again.__dict__  # built at start: its saved state is read before serving
    assert again.bios.attributes["ProcTurboMode"] == "Disabled"
    assert again.bios.pending == {"ProcTurboMode": "Enabled"}
    assert again.bios.has_password("AdminPassword")
    again.worker.close()
    store.close()


def test_unreadable_bios_row_stops_the_node(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.node("a").save("bios", "settings", {"current": {}, "pending": {"ProcTurboMode": 7},
                                              "passwords": {}})
    with pytest.raises(StateError, match=f"{tmp_path / FILENAME}.*node 'a' BIOS"):
        Node("a", MemoryBackend(), state=store.node("a"))
    store.close()


@pytest.mark.parametrize(("sync", "pragma"), [("normal", 1), ("full", 2)])
def test_state_sync_sets_how_far_a_commit_goes(tmp_path: Path, sync: str, pragma: int) -> None:
    store = open_store(tmp_path, sync)  # type: ignore[arg-type]
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == pragma
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_state_sync_comes_from_the_config_and_the_flag(tmp_path: Path) -> None:
    from bmc.config import ConfigError, Overrides, load_config

    path = tmp_path / "c.yaml"
    path.write_text("defaults: {state_sync: full}\nnodes: [{name: a}]\n")
    assert load_config(path).defaults.state_sync == "full"
    assert load_config(path, Overrides(state_sync="normal")).defaults.state_sync == "normal"
    path.write_text("defaults: {state_sync: sometimes}\nnodes: [{name: a}]\n")
    with pytest.raises(ConfigError, match="state_sync"):
        load_config(path)
