"""The consoles a Manager advertises: `SerialConsole` (IPMI SOL, the WebSocket console) and,
when the node has a noVNC viewer configured or its backend a VNC endpoint, `GraphicalConsole`."""

from __future__ import annotations

from typing import Any

from bmc.node import Node

#: one IPMI SOL session per node, plus the WebSocket viewers
SOL_SESSIONS = 1


def console_properties(node: Node) -> dict[str, Any]:
    """Manager properties: SerialConsole, GraphicalConsole (if configured), their Oem links."""
    from redfish.console_ws import MAX_VIEWERS

    hub = node.console
    websocket = hub.websocket_url if hub.available else None
    types = ["IPMI"] + (["Oem"] if websocket else [])
    oem: dict[str, Any] = {}
    if websocket:
        oem["SerialConsoleWebSocket"] = websocket
    serial = {
        "ServiceEnabled": hub.available,
        "MaxConcurrentSessions": SOL_SESSIONS + (MAX_VIEWERS if websocket else 0),
        "ConnectTypesSupported": types if hub.available else [],
    }
    properties: dict[str, Any] = {"SerialConsole": serial}
    # a noVNC page configured for the node wins over the server's own VNC endpoint
    graphical = hub.novnc_url or (node.backend.graphical_console()
                                  if node.backend.capabilities.graphical_console else None)
    if graphical:
        properties["GraphicalConsole"] = {
            "ServiceEnabled": True,
            "MaxConcurrentSessions": 1,
            "ConnectTypesSupported": ["Oem"],  # VNC, or VNC through a noVNC page
        }
        oem["GraphicalConsoleURL"] = graphical
    if oem:
        properties["Oem"] = {"BmcEmulator": oem}
    return properties
