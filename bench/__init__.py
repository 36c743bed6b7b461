"""Benchmarks of bmc-emulator side by side with its peers (`python -m bench`; see README.md)."""
