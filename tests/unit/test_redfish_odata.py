"""Serializing an answer once: what the one-pass ETag and the server's single send must keep."""

from __future__ import annotations

import base64
import http.client
from typing import Any

import pytest
from flask import url_for
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish import odata
from redfish.app import create_app
from redfish.server import RedfishServer

KEYS = st.sampled_from(["@odata.context", "@odata.id", "@odata.type", "@odata.etag", "Id",
                        "Name", "Members@odata.count", "Members", "Status", "Ünïcode"])
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def reference(body: dict[str, Any]) -> tuple[str, bytes]:
    """What the app answered before: serialize, hash, add `@odata.etag`, serialize again."""
    etag = odata.etag_of(odata.dumps(body))
    return etag, odata.dumps(odata.with_etag(body, etag))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_dumps_with_etag_is_the_two_pass_answer(body: dict[str, Any]) -> None:
    assert odata.dumps_with_etag(body) == reference(body)


def test_dumps_with_etag_of_a_resource() -> None:
    body = odata.resource("ComputerSystem", "/redfish/v1/Systems/n1", Id="n1", Name="n\u00e9")
    etag, data = odata.dumps_with_etag(body)
    assert (etag, data) == reference(body)
    assert data.startswith(b'{"@odata.context": "/redfish/v1/$metadata#ComputerSystem.'
                           b'ComputerSystem", "@odata.id": "/redfish/v1/Systems/n1", '
                           b'"@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", '
                           b'"@odata.etag": "\\"')
    assert etag == odata.etag_for(body)


def test_a_json_response_read_before_the_app_finishes_it_has_its_body() -> None:
    response = odata.json_response({"a": 1}, 400)
    assert response.get_data() == b'{"a": 1}' and response.status_code == 400


def test_url_building_still_works_though_compiled_late() -> None:
    app = create_app()
    with app.test_request_context():
        assert url_for("systems.get_system", system_id="n 1") == "/redfish/v1/Systems/n%201"
        assert url_for("systems.get_system", system_id="n2", x="y") == \
            "/redfish/v1/Systems/n2?x=y"


def test_an_answer_and_its_header_go_out_in_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    from waitress.channel import HTTPChannel

    writes: list[bytes] = []
    real = HTTPChannel.write_soon

    def write_soon(self: HTTPChannel, data: bytes) -> int:
        writes.append(bytes(data))
        return real(self, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(HTTPChannel, "write_soon", write_soon)
    node = Node("n1", MemoryBackend())
    node.users.add("admin", "password")
    with RedfishServer([("127.0.0.1", 0, node)], threads=1) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=5)
        auth = "Basic " + base64.b64encode(b"admin:password").decode()
        conn.request("GET", "/redfish/v1/Systems/n1", headers={"Authorization": auth})
        response = conn.getresponse()
        body = response.read()
        conn.close()
    assert response.status == 200 and body.endswith(b"}")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(body)
