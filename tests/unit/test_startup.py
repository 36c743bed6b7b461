"""Start-up: what IPMI needs to answer is all that is loaded before it answers.

The node's features (sensors, SEL, logs, BIOS, ...) are built on first use or before the
node's first event, and IPMI command modules are imported per netfn on first use; both must
behave as if they had been there from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from backends.memory import MemoryBackend
from bmc.node import FEATURES, Node, PowerAction
from ipmi.commands import MODULES, load_all

REPO = Path(__file__).resolve().parents[2]
GET_AUTH_CAPS = "0600ff07" "00" "00000000" "00000000" "09" "2018c8" "810038" "8e04" "b5"

#: imported only after IPMI answers: Redfish's stack, the node features, the other commands
NOT_ON_THE_IPMI_PATH = ("flask", "werkzeug", "waitress", "jinja2", "redfish.app", "bmc.sensors",
                        "bmc.sel", "bmc.inventory", "bmc.bios", "bmc.tasks",
                        "redfish.event_service",
                        "ipmi.sdr", "ipmi.commands.storage", "ipmi.commands.sensor",
                        "ipmi.commands.dcmi")


def _run(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter from the repository; it prints one JSON object."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def test_answering_ipmi_loads_neither_redfish_nor_the_node_features() -> None:
    answer = _run(f"""
import json, sys
from bmc.cli import main  # what `bmc-emulator serve` imports before it starts IPMI
from bmc.config import Overrides, default_config
from bmc.serve import build_nodes
from ipmi.server import IpmiServer
from ipmi.endpoint import BmcEndpoint
nodes = build_nodes(default_config(Overrides(nodes=2)))  # the default (process) backend
endpoint = BmcEndpoint(nodes[0])
# Get Channel Authentication Capabilities, the first packet ipmitool sends
reply = endpoint.datagram_received(bytes.fromhex({GET_AUTH_CAPS!r}), ("127.0.0.1", 1))
loaded = [m for m in {NOT_ON_THE_IPMI_PATH!r} if m in sys.modules]
for node in nodes:
    node.close()
print(json.dumps({{"answered": reply is not None and reply[20] == 0, "loaded": loaded}}))
""")
    assert answer == {"answered": True, "loaded": []}


def test_an_unknown_group_command_loads_only_its_netfn() -> None:
    # clients probe NetFn 2Ch (PICMG, VITA) in their first session: answering that must not
    # import the sensor model or the SEL
    answer = _run("""
import json, sys
from ipmi.commands import NETFN_GROUP, load_core, lookup
load_core()
missing = lookup(NETFN_GROUP, 0x3E)
print(json.dumps({"missing": missing is None, "dcmi": "ipmi.commands.dcmi" in sys.modules,
                  "heavy": [m for m in ("bmc.sensors", "bmc.sel", "ipmi.sdr",
                                        "ipmi.commands.storage") if m in sys.modules]}))
""")
    assert answer == {"missing": True, "dcmi": True, "heavy": []}


def test_every_command_module_is_listed_under_its_netfn() -> None:
    for (netfn, _cmd), command in load_all().items():
        assert command.handler.__module__.rsplit(".", 1)[1] in MODULES[netfn], command


def test_node_features_are_built_on_first_use() -> None:
    node = Node("n1", MemoryBackend())
    assert not FEATURES & set(vars(node))
    assert node.inventory.processors  # any feature builds them all
    assert set(vars(node)) >= FEATURES


def test_the_first_power_action_is_logged_as_if_the_features_had_been_there() -> None:
    node = Node("n1", MemoryBackend())
    node.power(PowerAction.ON)
    messages = [e.message for e in node.sel.entries()]
    # the off state was seen first: the fans start being scanned, nothing to log for them
    assert messages == ["ACPI State: S0/G0: working, asserted (On)"]
    assert [e.message_id for e in node.system_log.entries()] == [
        "ResourceEvent.1.4.3.ResourcePoweredOn"]


def test_a_server_running_from_the_start_gets_its_features_at_once() -> None:
    # it can stop by itself (its process exits): the SEL must have seen it running
    node = Node("n1", MemoryBackend(power_on=True))
    assert set(vars(node)) >= FEATURES
    node.power(PowerAction.FORCE_OFF)
    messages = [e.message for e in node.sel.entries()]
    assert messages[0] == "Power Unit: Power off/down, asserted (ForceOff)"


def test_features_are_built_once_whoever_asks_first() -> None:
    node = Node("n1", MemoryBackend())
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(node.sel)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(sel) for sel in seen}) == 1 and seen[0] is node.sel
