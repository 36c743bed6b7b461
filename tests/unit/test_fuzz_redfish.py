"""The Redfish app under fuzzing (bench/fuzzing/redfish.py), bounded for CI: random methods,
paths (every resource the service links to, and mutations of them), queries, headers and
bodies, with and without credentials; and the bugs the fuzzer found, as regression tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzzing import BytesSource, FuzzFailure, network_guard
from bench.fuzzing.redfish import METHODS, RedfishTarget

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def target() -> Iterator[RedfishTarget]:
    with network_guard():
        made = RedfishTarget()
        made.errors.install()
        yield made
        made.errors.remove()
        made.close()


def test_the_walk_finds_every_kind_of_resource(target: RedfishTarget) -> None:
    paths = set(target.paths)
    for expected in ("/redfish/v1/Systems/fuzz-rf", "/redfish/v1/Managers/BMC",
                     "/redfish/v1/Chassis/fuzz-rf", "/redfish/v1/AccountService/Accounts/2",
                     "/redfish/v1/SessionService/Sessions", "/redfish/v1/EventService",
                     "/redfish/v1/Systems/fuzz-rf/Actions/ComputerSystem.Reset",
                     "/redfish/v1/Managers/BMC/VirtualMedia/Cd", "/redfish/v1/UpdateService",
                     "/redfish/v1/Systems/fuzz-rf/Bios", "/redfish/v1/TaskService"):
        assert expected in paths
    assert len(paths) > 100


def test_every_resource_and_method_once(target: RedfishTarget) -> None:
    """Each path the walk found, with each method, a body made from that resource's own
    properties (so every resource is reached whatever the random draws below do)."""
    for index, path in enumerate(list(target.paths)):
        for method in sorted(set(METHODS)):
            body = target.body(BytesSource(bytes((index % 5,)) + index.to_bytes(4, "little")),
                               path)
            response = target.client.open(path, method=method, data=body, headers={
                "Authorization": "Basic YWRtaW46cGFzc3dvcmQ=",
                "Content-Type": "application/json"})
            target.check(method, path, "", response)
        target.repair_if_needed()
    target.errors.check("every resource")


def test_random_requests(target: RedfishTarget) -> None:
    """Deterministic (derandomize, no example database); state carries over from one request
    to the next, as on a real BMC; afterwards a login, a GET and a power action still work."""

    @settings(FUZZ, max_examples=2500)
    @given(st.binary(min_size=8, max_size=600))
    def one(data: bytes) -> None:
        target.run_input(data)

    one()
    target.still_works()
    assert target.stats["requests"] > 2500


# -- the checks themselves catch what they are for ---------------------------------------------


def test_a_500_and_its_error_record_are_failures(target: RedfishTarget,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("boom")

    monkeypatch.setitem(target.app.view_functions, "service_root.service_root", broken)
    response = target.client.get("/redfish/v1",
                                 headers={"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="})
    with pytest.raises(FuzzFailure, match="-> 500"):
        target.check("GET", "/redfish/v1", "", response)
    with pytest.raises(FuzzFailure, match="boom"):
        target.errors.check("Redfish")


def test_an_error_without_a_redfish_body_is_a_failure(target: RedfishTarget) -> None:
    from werkzeug.wrappers import Response

    with pytest.raises(FuzzFailure, match="not a Redfish error body"):
        target.check("GET", "/x", "", Response(b'{"error": "nope"}', 400,
                                               content_type="application/json"))
