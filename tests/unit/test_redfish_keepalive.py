"""HTTP/1.1 connections stay open across bodyless answers (204, 304), not only 200s."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator

import pytest

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish.server import RedfishServer

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:password").decode()}
SYSTEM = "/redfish/v1/Systems/node-1"


@pytest.fixture()
def conn() -> Iterator[http.client.HTTPConnection]:
    node = Node("node-1", MemoryBackend())
    node.users.add("admin", "password")
    with RedfishServer([("127.0.0.1", 0, node)], threads=2) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=5)
        yield connection
        connection.close()


def ask(conn: http.client.HTTPConnection, method: str, path: str,
        body: dict | None = None, **headers: str) -> http.client.HTTPResponse:
    data = json.dumps(body).encode() if body is not None else None
    extra = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers={**AUTH, **extra, **headers})
    response = conn.getresponse()
    response.read()
    return response


def test_a_204_answer_keeps_the_connection(conn: http.client.HTTPConnection) -> None:
    assert ask(conn, "GET", SYSTEM).status == 200
    first = conn.sock
    response = ask(conn, "POST", f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": "On"})
    assert response.status == 204
    assert response.getheader("Connection") is None and not response.will_close
    assert ask(conn, "GET", SYSTEM).status == 200
    assert conn.sock is first  # the same TCP connection all along


def test_a_304_answer_keeps_the_connection(conn: http.client.HTTPConnection) -> None:
    etag = ask(conn, "GET", SYSTEM).getheader("ETag")
    first = conn.sock
    response = ask(conn, "GET", SYSTEM, **{"If-None-Match": etag})
    assert response.status == 304 and not response.will_close
    assert ask(conn, "GET", SYSTEM).status == 200
    assert conn.sock is first


def test_connection_close_is_still_honoured(conn: http.client.HTTPConnection) -> None:
    response = ask(conn, "POST", f"{SYSTEM}/Actions/ComputerSystem.Reset",
                   {"ResetType": "ForceOff"}, Connection="close")
    assert response.status == 204
    assert response.getheader("Connection") == "close" and response.will_close
