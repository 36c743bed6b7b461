"""The Metal API's failure modes, through the backend: clear errors, bounded time, no secrets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from backends import create_backend
from backends.base import BackendError, BootDevice, PowerState
from backends.metal import MetalBackend
from tests.metal_api_server import MetalApiServer

TOKEN = "faults-test-token-91c2"
ENV = "BMC_TEST_METAL_TOKEN"
PATIENCE = 2.0  # the default api_timeout
SLACK = 0.6  # a loaded 2-core machine


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> Iterator[MetalApiServer]:
    monkeypatch.setenv(ENV, TOKEN)
    caplog.set_level(logging.DEBUG)
    server = MetalApiServer(TOKEN, transition_delay=0.2).start()
    yield server
    server.stop()
    assert server.violations == []
    assert TOKEN not in caplog.text  # whatever happened, the token was never logged


def backend(api: MetalApiServer, device: str, **settings: object) -> MetalBackend:
    made = create_backend("metal", {"device_id": device, "token_env": ENV,
                                    "base_url": api.url, "state_cache": 0, **settings}, "m1")
    assert isinstance(made, MetalBackend)
    return made


def timed_error(call, *args: object) -> tuple[BackendError, float]:  # noqa: ANN001
    start = time.monotonic()
    with pytest.raises(BackendError) as caught:
        call(*args)
    elapsed = time.monotonic() - start
    assert TOKEN not in str(caught.value)
    return caught.value, elapsed


def test_a_wrong_token_is_401_naming_the_variable_not_the_token(
        api: MetalApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    device = api.add_device()
    monkeypatch.setenv(ENV, "not-the-token")
    error, elapsed = timed_error(backend(api, device).power_state)
    assert "401" in str(error) and f"${ENV}" in str(error)
    assert "not-the-token" not in str(error)
    assert elapsed < 1  # not retried: retrying does not fix a token


def test_another_projects_device_is_403(api: MetalApiServer) -> None:
    device = api.add_device(project="someone-else")
    error, _ = timed_error(backend(api, device).power_on, BootDevice.NONE)
    assert "403" in str(error) and device in str(error)


def test_an_unknown_device_is_404(api: MetalApiServer) -> None:
    error, _ = timed_error(backend(api, "0c0ffee0-0000-4000-8000-000000000000").power_state)
    assert "does not exist (404" in str(error)


def test_5xx_is_retried_within_the_patience(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    api.fail(500, count=2)
    api.fail(503)
    assert backend(api, device).power_state() is PowerState.ON
    assert len(api.requests) == 4


def test_a_broken_api_is_reported_within_the_patience(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    api.fail(502, count=1000)
    error, elapsed = timed_error(backend(api, device).power_state)
    assert "502" in str(error) and "gave up after" in str(error)
    assert PATIENCE - 0.2 < elapsed < PATIENCE + SLACK  # it kept trying as long as it may
    assert 3 <= len(api.requests) <= 20  # retried, with pauses (not a busy loop)


def test_a_slow_api_times_out_within_the_patience(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    api.slow(5, count=10)
    error, elapsed = timed_error(backend(api, device).power_off)
    assert "no answer in time" in str(error)
    assert elapsed < PATIENCE + SLACK


def test_the_patience_is_configurable(api: MetalApiServer) -> None:
    device = api.add_device(state="active")
    api.slow(5, count=10)
    _, elapsed = timed_error(backend(api, device, api_timeout=0.5).power_state)
    assert elapsed < 0.5 + SLACK


def test_a_dropped_connection_is_retried(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    api.drop(count=1)
    metal = backend(api, device)
    assert metal.power_state() is PowerState.OFF
    api.drop(count=1, method="POST")
    metal.power_on(BootDevice.NONE)
    assert api.device(device).state in ("powering_on", "active")


def test_429_waits_for_retry_after_when_it_fits(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    api.fail(429, retry_after=0.5)
    start = time.monotonic()
    assert backend(api, device).power_state() is PowerState.OFF
    assert 0.5 <= time.monotonic() - start < 0.5 + SLACK


def test_429_beyond_the_patience_is_reported_at_once(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    api.fail(429, retry_after=30, count=10)
    error, elapsed = timed_error(backend(api, device).power_on, BootDevice.NONE)
    assert "rate limited" in str(error) and "30 s" in str(error)
    assert elapsed < 0.5
    assert api.device(device).state == "inactive"


def test_429_with_an_http_date(api: MetalApiServer) -> None:
    device = api.add_device(state="inactive")
    api.fail(429, retry_after="Wed, 21 Oct 2037 07:28:00 GMT")
    error, _ = timed_error(backend(api, device).power_state)
    assert "rate limited" in str(error)


def test_a_refused_connection_is_reported_within_the_patience(api: MetalApiServer) -> None:
    device = api.add_device()
    metal = backend(api, device)
    api.stop()
    error, elapsed = timed_error(metal.power_state)
    assert "connection failed" in str(error)
    assert elapsed < PATIENCE + SLACK


def test_a_failed_read_is_cached_so_callers_do_not_pile_up(api: MetalApiServer) -> None:
    device = api.add_device()
    metal = backend(api, device, state_cache=5, api_timeout=0.3)
    api.slow(5, count=100)
    timed_error(metal.power_state)
    _, elapsed = timed_error(metal.power_state)  # the same answer, at once
    assert elapsed < 0.05


def test_the_backend_never_shows_the_token(api: MetalApiServer) -> None:
    metal = backend(api, api.add_device())
    metal.power_state()  # the client exists, the token is in its session
    assert metal.api.session.headers["X-Auth-Token"] == TOKEN
    assert TOKEN not in repr(metal) and TOKEN not in repr(metal.api)
    assert TOKEN not in repr(vars(metal))
