"""The local Metal API server itself: it holds requests and its own answers to the spec.

If it accepted anything, the `metal` backend's tests against it would prove nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.metal_api_server import Device, MetalApiServer

TOKEN = "server-test-token"
HEADERS = {"X-Auth-Token": TOKEN}


@pytest.fixture
def api() -> Iterator[MetalApiServer]:
    server = MetalApiServer(TOKEN, transition_delay=0.2).start()
    yield server
    server.stop()


def test_a_request_outside_the_specification_is_refused_and_recorded(api: MetalApiServer
                                                                     ) -> None:
    device = api.add_device()
    answer = requests.post(f"{api.url}/devices/{device}/actions", headers=HEADERS,
                           json={"type": "explode"}, timeout=5)
    assert answer.status_code == 422
    assert "explode" in answer.json()["errors"][0]
    answer = requests.put(f"{api.url}/devices/{device}", headers=HEADERS,
                          json={"always_pxe": "yes"}, timeout=5)
    assert answer.status_code == 422
    answer = requests.get(f"{api.url}/devices/not-a-uuid", headers=HEADERS, timeout=5)
    assert answer.status_code == 422
    assert len(api.violations) == 3
    assert "'explode' is not one of" in api.violations[0]
    assert api.devices[device].actions == []


def test_the_token_is_checked(api: MetalApiServer) -> None:
    device = api.add_device()
    url = f"{api.url}/devices/{device}"
    assert requests.get(url, timeout=5).status_code == 401  # no X-Auth-Token at all
    wrong = requests.get(url, headers={"X-Auth-Token": "guess"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {
        "errors": ["Invalid authentication token"]}
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 200
    assert api.violations == []  # a missing token is the client's right to try, not a bug


def test_its_own_answers_are_checked_against_the_device_schema(
        api: MetalApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    device = api.add_device()
    good = requests.get(f"{api.url}/devices/{device}", headers=HEADERS, timeout=5).json()
    assert good["state"] == "inactive" and good["id"] == device
    assert api.violations == []
    real = Device.as_json
    monkeypatch.setattr(Device, "as_json",
                        lambda self, project: {**real(self, project), "state": "on-ish"})
    requests.get(f"{api.url}/devices/{device}", headers=HEADERS, timeout=5)
    assert len(api.violations) == 1 and "'on-ish' is not one of" in api.violations[0]


def test_the_state_machine_takes_its_time(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    url = f"{api.url}/devices/{device}"
    assert requests.post(f"{url}/actions", headers=HEADERS, json={"type": "power_on"},
                         timeout=5).status_code == 202
    assert requests.get(url, headers=HEADERS, timeout=5).json()["state"] == "powering_on"
    again = requests.post(f"{url}/actions", headers=HEADERS, json={"type": "power_on"},
                          timeout=5)
    assert again.status_code == 422  # not from powering_on
    time.sleep(0.25)
    body = requests.get(url, headers=HEADERS, timeout=5).json()
    assert body["state"] == "active"
    assert {a["type"] for a in body["actions"]} == {"power_off", "reboot", "rescue", "reinstall"}
    assert api.violations == []


def test_injected_failures(api: MetalApiServer) -> None:
    device = api.add_device()
    url = f"{api.url}/devices/{device}"
    api.fail(429, retry_after=7)
    limited = requests.get(url, headers=HEADERS, timeout=5)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    api.fail(503)
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 503
    api.drop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=HEADERS, timeout=5)
    api.slow(0.3)
    start = time.monotonic()
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 200
    assert time.monotonic() - start >= 0.3
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 200
    assert api.violations == []  # the errors carry the specification's Error body
