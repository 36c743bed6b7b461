"""The `metal` backend against the local Metal API server: power, states, boot device, cache."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from backends import create_backend
from backends.base import BackendError, BootDevice, PowerOp, PowerState
from backends.metal import MetalBackend
from tests.metal_api_server import MetalApiServer

TOKEN = "unit-test-token-7f3a"
ENV = "BMC_TEST_METAL_TOKEN"
DELAY = 0.3  # the fake device's transition time


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetalApiServer]:
    monkeypatch.setenv(ENV, TOKEN)
    server = MetalApiServer(TOKEN, transition_delay=DELAY).start()
    yield server
    server.stop()
    assert server.violations == []  # our client sent only what the specification allows


def backend(api: MetalApiServer, device: str, **settings: object) -> MetalBackend:
    made = create_backend("metal", {"device_id": device, "token_env": ENV,
                                    "base_url": api.url, "state_cache": 0, **settings}, "m1")
    assert isinstance(made, MetalBackend)
    return made


def actions(api: MetalApiServer) -> list[str]:
    return [body["type"] for method, path, body in api.requests
            if method == "POST" and path.endswith("/actions")]


def wait_state(api: MetalApiServer, device: str, state: str) -> None:
    deadline = time.monotonic() + 5
    while api.device(device).state != state:
        assert time.monotonic() < deadline, api.device(device).state
        time.sleep(0.02)


# -- settings -----------------------------------------------------------------------------------
def test_settings_are_checked_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    with pytest.raises(ValueError, match="not a device UUID"):
        MetalBackend(device_id="web-1", token_env=ENV)
    with pytest.raises(ValueError, match="http"):
        MetalBackend(device_id="8d4cb8e1-4b4b-4f8e-9f51-1f3d1b0a0c11", token_env=ENV,
                     base_url="ftp://x")
    with pytest.raises(ValueError, match="api_timeout"):
        MetalBackend(device_id="8d4cb8e1-4b4b-4f8e-9f51-1f3d1b0a0c11", token_env=ENV,
                     api_timeout=0)
    with pytest.raises(TypeError, match="sos_host: must be str or null"):
        MetalBackend(device_id="8d4cb8e1-4b4b-4f8e-9f51-1f3d1b0a0c11", token_env=ENV,
                     sos_host=22)  # type: ignore[arg-type]
    monkeypatch.delenv(ENV)
    with pytest.raises(ValueError, match=f"{ENV}.*is not set"):
        MetalBackend(device_id="8d4cb8e1-4b4b-4f8e-9f51-1f3d1b0a0c11", token_env=ENV)


def test_capabilities(api: MetalApiServer) -> None:
    plain = backend(api, api.add_device())
    assert plain.capabilities.boot_devices == {BootDevice.PXE, BootDevice.DISK}
    assert PowerOp.NMI not in plain.capabilities.power  # the API has none
    assert not plain.capabilities.virtual_media
    assert not plain.capabilities.serial_console  # no SOS host configured
    assert plain.attach_console(lambda data: None) is False
    sos = backend(api, api.add_device(), facility="da11")
    assert sos.capabilities.serial_console
    assert sos.sos is not None and sos.sos.host == "sos.da11.platformequinix.com"
    assert sos.sos.user == sos.device_id


# -- power ----------------------------------------------------------------------------------------
def test_power_on_off_through_the_api(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device)
    assert metal.power_state() is PowerState.OFF
    metal.power_on(BootDevice.NONE)
    assert actions(api) == ["power_on"]
    assert api.device(device).state == "powering_on"
    assert metal.power_state() is PowerState.ON  # on its way: where the transition leads
    wait_state(api, device, "active")
    assert metal.power_state() is PowerState.ON
    metal.power_off()
    assert metal.power_state() is PowerState.OFF
    wait_state(api, device, "inactive")
    assert metal.power_state() is PowerState.OFF
    assert actions(api) == ["power_on", "power_off"]


def test_reset_and_cycle_reboot_and_stay_on(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    metal = backend(api, device)
    metal.reset(BootDevice.NONE)
    assert api.device(device).state == "powering_off"  # a reboot goes through off...
    assert metal.power_state() is PowerState.ON  # ... but the BMC's server stays on
    wait_state(api, device, "active")
    metal.power_cycle(BootDevice.NONE)
    wait_state(api, device, "active")
    assert actions(api) == ["reboot", "reboot"]
    assert len(api.device(device).boots) == 2


def test_reset_of_a_device_that_is_off_powers_it_on(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device)
    metal.reset(BootDevice.NONE)  # the API refuses a reboot of an inactive device (422)
    assert actions(api) == ["reboot", "power_on"]
    assert metal.power_state() is PowerState.ON


def test_an_action_already_done_is_no_error(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    metal = backend(api, device, state_cache=60)
    metal._assume(state="inactive")  # noqa: SLF001 - our view is stale: someone powered it on
    metal.power_on(BootDevice.NONE)  # 422 from the API: it is active already
    assert metal.power_state() is PowerState.ON


@pytest.mark.parametrize("state", ["queued", "provisioning", "reinstalling", "failed",
                                   "deprovisioning"])
def test_states_without_power_are_reported_by_name(api: MetalApiServer, state: str) -> None:
    device = api.add_device(state=state)
    metal = backend(api, device)
    with pytest.raises(BackendError, match=f"is '{state}'"):
        metal.power_state()


def test_an_action_the_state_does_not_allow_says_which_state(api: MetalApiServer) -> None:
    device = api.add_device(state="provisioning")
    metal = backend(api, device)
    with pytest.raises(BackendError, match="provisioning.*422"):
        metal.power_on(BootDevice.NONE)


# -- the cache and polling ----------------------------------------------------------------------
def test_power_state_is_cheap_to_call_often(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device, state_cache=1.0)
    for _ in range(200):
        assert metal.power_state() is PowerState.OFF
    gets = [r for r in api.requests if r[0] == "GET"]
    assert len(gets) == 1


def test_polled_often_only_while_a_transition_is_under_way(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device, poll_interval=60, transition_poll=0.5)
    metal.power_state()
    assert metal.poll_interval == 60
    metal.power_on(BootDevice.NONE)
    assert metal.poll_interval == 0.5
    wait_state(api, device, "active")
    metal.power_state()
    assert metal.poll_interval == 60


def test_a_change_from_outside_is_seen_after_the_cache_expires(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    metal = backend(api, device, state_cache=0.2)
    assert metal.power_state() is PowerState.ON
    api.set_state(device, "inactive")  # powered off in the Metal portal
    time.sleep(0.25)
    assert metal.power_state() is PowerState.OFF


# -- boot device ----------------------------------------------------------------------------------
def test_pxe_boot_sets_always_pxe_and_the_ipxe_script(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device, ipxe_script_url="http://boot.example/deploy.ipxe")
    metal.power_on(BootDevice.PXE)
    wait_state(api, device, "active")
    assert api.device(device).always_pxe is True
    assert api.device(device).boots == ["pxe http://boot.example/deploy.ipxe"]
    # the next boot without an override is from the disk again
    metal.reset(BootDevice.NONE)
    wait_state(api, device, "active")
    assert api.device(device).always_pxe is False
    assert api.device(device).boots[-1] == "disk"
    puts = [body for method, _, body in api.requests if method == "PUT"]
    assert puts == [{"always_pxe": True, "ipxe_script_url": "http://boot.example/deploy.ipxe"},
                    {"always_pxe": False}]


def test_boot_settings_are_sent_only_when_they_change(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device)
    metal.power_on(BootDevice.DISK)  # always_pxe is false already
    wait_state(api, device, "active")
    metal.reset(BootDevice.NONE)
    assert [r for r in api.requests if r[0] == "PUT"] == []


def test_pxe_clear_after_undoes_a_pxe_boot_once_it_is_done(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    metal = backend(api, device, pxe_clear_after=0.2)
    metal.power_on(BootDevice.PXE)
    assert api.device(device).always_pxe is True
    wait_state(api, device, "active")
    metal.power_state()  # sees the boot done: the clock starts
    assert api.device(device).always_pxe is True  # not yet: the server PXE-boots now
    time.sleep(0.25)
    metal.power_state()
    assert api.device(device).always_pxe is False
    puts = [body for method, _, body in api.requests if method == "PUT"]
    assert puts == [{"always_pxe": True}, {"always_pxe": False}]
