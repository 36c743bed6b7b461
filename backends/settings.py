"""Checks of backend settings that their type hints cannot say (ranges), shared by backends.

The config checks a setting's type against the constructor's hints before the backend is
built; a backend checks ranges itself, with these, so every backend words them alike.
"""

from __future__ import annotations


def seconds(value: object, name: str, low: float, high: float) -> float:
    """`value` as seconds in low..high; ValueError naming the setting otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name}: must be {low:g}..{high:g} seconds, got {value!r}")
    return float(value)
