"""The scale benchmark never reports as answered what it did not measure."""

from __future__ import annotations

import pytest

import bench.scale
from bench.scale import ScaleResult
from bench.util import free_ports


def result(**fields: object) -> ScaleResult:
    base = {"ipmi_answered": 5, "redfish_answered": 5, "sample_size": 5,
            "sample_redfish_ok": 5, "sample_ipmi_ok": 5}
    return ScaleResult(5, "ports", **{**base, **fields})  # type: ignore[arg-type]


def test_all_answer_only_when_everything_was_measured_and_answered() -> None:
    assert result().all_answer is True
    assert result(sample_ipmi_ok=4).all_answer is False
    assert result(sample_redfish_ok=4).all_answer is False
    assert result(ipmi_answered=4).all_answer is False
    # without ipmitool: not a success, not a failure either
    unmeasured = result(sample_ipmi_ok=None)
    assert unmeasured.all_answer is None
    assert unmeasured.sample_text == "Redfish 5/5, ipmitool not measured (no ipmitool)"
    assert result(sample_ipmi_ok=None, redfish_answered=3).all_answer is False


def test_the_sample_without_ipmitool_is_not_counted_as_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.scale, "have_ipmitool", lambda: False)
    port = free_ports("tcp", 2)  # nothing listens: Redfish cannot answer either
    endpoints = [("127.0.0.1", port), ("127.0.0.1", port + 1)]
    assert bench.scale._sample(endpoints, endpoints) == (2, 0, None)
