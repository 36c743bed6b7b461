"""Wording shared by the messages about settings: the config file's and the management API's."""

from __future__ import annotations

from typing import Any


def value_kind(value: Any) -> str:
    """A given value as a message names it: "a mapping", "a list", "nothing (null)", 'x'."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing (null)" if value is None else repr(value)
