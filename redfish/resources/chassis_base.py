"""What every chassis sub-resource needs: the node whose chassis a URI names."""

from __future__ import annotations

from bmc.node import Node
from redfish import context


def chassis_node(chassis_id: str) -> Node:
    """The request's node if `chassis_id` names its chassis; 404 otherwise."""
    node = context.node()
    if chassis_id != node.name:
        raise context.missing()
    return node
