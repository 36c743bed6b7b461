"""bmc-emulator: the node model, config and CLI (the only package that knows both protocols)."""

__version__ = "0.1.0"
