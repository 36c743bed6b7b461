"""The running emulator's nodes, which the management API adds to and removes from.

`serve` starts with the nodes of its config; a node added later is checked exactly as if it
had been in the config (same YAML shape, same errors naming the field, no address or port
used twice), then served by the running IPMI and Redfish servers. A node removed stops being
served: its IPMI sessions and Redfish connections end, its console viewers are dropped, and
its backend is closed. Its saved state (--state-dir) stays, for a node of that name added
later, unless it is removed with `forget`.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from bmc.config import Config, ConfigError, Defaults, NodeConfig, check_nodes
from bmc.manage import NodeRefused
from bmc.node import Node
from bmc.state import StateError

if TYPE_CHECKING:
    from bmc.state import StateStore

log = logging.getLogger(__name__)


class Fleet:
    """Nodes by name with their config, and the servers serving them. Thread-safe."""

    def __init__(self, config: Config, nodes: list[Node], ipmi: Any, redfish: Any,
                 store: StateStore | None = None) -> None:
        self.config = config
        self.store = store  # added nodes keep their state too
        self.ipmi = ipmi
        self.redfish = redfish
        self._lock = threading.Lock()
        self._specs: dict[str, NodeConfig] = {spec.name: spec for spec in config.nodes}
        self._nodes: dict[str, Node] = {node.name: node for node in nodes}
        self._next_index = len(config.nodes)  # where generated ports continue

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            pairs = [(self._specs[name], node) for name, node in self._nodes.items()]
        return [_describe(spec, node) for spec, node in pairs]

    def nodes(self) -> list[Node]:
        with self._lock:
            return list(self._nodes.values())

    def add(self, text: str) -> dict[str, Any]:
        """Add the node `text` describes (YAML or JSON, one node as in the config)."""
        from bmc.config_file import load_node
        from bmc.serve import StartupError, build_node, ipmi_options, tls_settings

        with self._lock:
            spec, problems = load_node(text, "<added node>", self.config.defaults or Defaults(),
                                       self._next_index)
            if spec is None:
                raise NodeRefused([_without_file(str(p)) for p in problems])
            # what the running nodes say of it: their problems were reported at start
            problems += [p for p in check_nodes([*self._specs.values(), spec])
                         if p.node == spec.name and p.source == spec.source]
            if spec.console.websocket is not None:
                problems.append(spec.problem("console.websocket", "a node added while the "
                                             "emulator runs has no WebSocket console"))
            if problems:
                raise NodeRefused([_without_file(str(p)) for p in problems])
            try:
                node = build_node(spec, self.store)
            except (ConfigError, StartupError) as exc:
                problems = getattr(exc, "problems", [exc])
                raise NodeRefused([_without_file(str(p)) for p in problems]) from None
            try:
                self.ipmi.add(spec.ipmi.address, spec.ipmi.port, node, ipmi_options(spec))
                try:
                    tls = tls_settings(spec) if spec.redfish_tls is not None else None
                    self.redfish.add(spec.redfish.address, spec.redfish.port, node, tls=tls)
                except BaseException:
                    self.ipmi.remove(node)
                    raise
            except OSError as exc:
                node.close()
                raise NodeRefused([f"node '{spec.name}': {exc.strerror or exc}"]) from None
            except StateError as exc:  # a saved event subscription cannot be read
                node.close()
                raise NodeRefused([f"node '{spec.name}': {exc}"]) from None
            except BaseException:
                node.close()
                raise
            self._specs[spec.name] = spec
            self._nodes[spec.name] = node
            self._next_index += 1
        node.build_features()
        log.info("node %s added: IPMI %s, Redfish %s", spec.name, spec.ipmi.host_port,
                 spec.redfish_url)
        return _describe(spec, node)

    def set_faults(self, name: str, raw: Any) -> dict[str, Any] | None:
        """Replace the faults of node `name` with the `faults:` mapping `raw` (None or {}:
        none); the node as `describe` shows it, None if there is no such node. NodeRefused
        names every problem of `raw`."""
        from bmc.faults import build, parse, set_faults

        values, found = parse(raw if raw is not None else {})
        if found:
            raise NodeRefused([f"faults.{key}: {text}" if key else f"faults: {text}"
                               for key, text in found])
        with self._lock:
            node, spec = self._nodes.get(name), self._specs.get(name)
            if node is None or spec is None:
                return None
            set_faults(node, build(values), "management API")
        return _describe(spec, node)

    def remove(self, name: str, *, forget: bool = False) -> bool:
        """Stop serving node `name`. Its saved state (--state-dir) is kept, so adding a node
        of that name again brings it back, unless `forget`: then its rows are deleted."""
        with self._lock:
            node = self._nodes.pop(name, None)
            if node is None:
                return False
            del self._specs[name]
        self.ipmi.remove(node)
        self.redfish.remove(node)
        node.close()
        forgotten = ""
        if forget and self.store is not None:
            forgotten = f", its saved state forgotten ({self.store.forget(name)} rows)"
        log.info("node %s removed%s", name, forgotten)
        return True


def _describe(spec: NodeConfig, node: Node) -> dict[str, Any]:
    """What `nodes list/show` shows: never a password."""
    return {
        "name": spec.name,
        "backend": spec.backend,
        "power": node.power_state.value,
        "ipmi": spec.ipmi.host_port,
        "redfish": spec.redfish_url,
        "users": [user.name for user in spec.users],
        "backend_fault": node.backend_fault,
        **_faults(node),
    }


def _faults(node: Node) -> dict[str, Any]:
    """The node's injected faults and what they did, for nodes that ever had some."""
    from bmc.faults import counters

    state, counted = node.faults, counters(node)
    if state is None and not counted:
        return {}
    return {"faults": state.describe() if state is not None else None,
            "faults_injected": counted}


def _without_file(problem: str) -> str:
    """`<added node>:3: node 'x': ...` -> `line 3: node 'x': ...` for the API's answer."""
    prefix = "<added node>:"
    if problem.startswith(prefix):
        line, _, rest = problem[len(prefix):].partition(": ")
        return f"line {line}: {rest}" if line.isdigit() else problem[len(prefix):].lstrip()
    return problem
