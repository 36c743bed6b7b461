"""Redfish hardening (issue 11) against the real `bmc-emulator serve` process, with requests:
hostile bodies get a 4xx and leave no traceback, one user's logins leave another's session
alone, events are not pushed to forbidden places, and credentials in URLs are never shown."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.e2e.conftest import Emulator

TIMEOUT = 10


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes], list[str]]]:
    """A real HTTP event receiver on loopback: host:port, the bodies and Authorizations."""
    bodies: list[bytes] = []
    auths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            auths.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", bodies, auths
    server.shutdown()
    server.server_close()


def send(emulator: Emulator, method: str, path: str, data: str | bytes,
         auth: tuple[str, str] | None = None) -> requests.Response:
    node = emulator.nodes[0]
    return requests.request(method, f"{node.redfish_url}{path}", data=data,
                            headers={"Content-Type": "application/json"},
                            auth=auth or (emulator.username, emulator.password), timeout=TIMEOUT)


def error_ids(response: requests.Response) -> list[str]:
    infos = response.json()["error"]["@Message.ExtendedInfo"]
    return [info["MessageId"].rsplit(".", 1)[1] for info in infos]


def test_lone_surrogates_are_a_400_and_leave_no_traceback(emulator: Emulator) -> None:
    bodies = [
        ("POST", "/redfish/v1/AccountService/Accounts",
         '{"UserName": "\\ud800", "Password": "passw0rd12", "RoleId": "ReadOnly"}'),
        ("PATCH", "/redfish/v1/Systems/node-1", '{"Boot": {"BootSourceOverrideTarget": '
                                                '"\\udfff"}}'),
        ("POST", "/redfish/v1/SessionService/Sessions",
         '{"UserName": "\\ud800", "Password": "x"}'),
    ]
    name = emulator.nodes[0].name
    for method, path, data in bodies:
        response = send(emulator, method, path.replace("node-1", name), data)
        assert response.status_code == 400, response.text
        assert error_ids(response) == ["MalformedJSON"]
    assert "Traceback" not in emulator.stderr and "UnicodeEncodeError" not in emulator.stderr


def test_a_huge_patch_of_unknown_properties_gets_a_small_answer(emulator: Emulator) -> None:
    data = json.dumps({f"P{i}": 0 for i in range(50_000)})
    assert len(data) > 500_000
    name = emulator.nodes[0].name
    response = send(emulator, "PATCH", f"/redfish/v1/Systems/{name}", data)
    assert response.status_code == 400
    assert len(response.content) < 20_000, len(response.content)
    assert error_ids(response) == ["PropertyUnknown"] * 20 + ["GeneralError"]


def test_one_users_logins_leave_another_users_session(emulator: Emulator) -> None:
    url = emulator.nodes[0].redfish_url
    created = send(emulator, "POST", "/redfish/v1/AccountService/Accounts", json.dumps(
        {"UserName": "hard-alice", "Password": "alice-pw-1", "RoleId": "ReadOnly"}))
    assert created.status_code == 201, created.text
    sessions = f"{url}/redfish/v1/SessionService/Sessions"
    alice = requests.post(sessions, json={"UserName": "hard-alice", "Password": "alice-pw-1"},
                          timeout=TIMEOUT)
    assert alice.status_code == 201
    token = alice.headers["X-Auth-Token"]
    with requests.Session() as http:
        for _ in range(70):  # more than all 64 slots, like a client that never logs out
            login = http.post(sessions, json={"UserName": emulator.username,
                                              "Password": emulator.password}, timeout=TIMEOUT)
            assert login.status_code == 201
    still = requests.get(f"{url}/redfish/v1/Systems", headers={"X-Auth-Token": token},
                         timeout=TIMEOUT)
    assert still.status_code == 200, "another user's logins ended alice's session"
    requests.delete(f"{url}{alice.headers['Location']}", headers={"X-Auth-Token": token},
                    timeout=TIMEOUT)


def test_events_go_to_a_loopback_receiver_but_not_to_forbidden_places(
        emulator: Emulator, receiver: tuple[str, list[bytes], list[str]]) -> None:
    where, bodies, auths = receiver
    own = emulator.nodes[0].redfish_url.removeprefix("http://")
    path = "/redfish/v1/EventService/Subscriptions"
    for destination in (f"http://{own}/redfish/v1/EventService/Actions/"
                        "EventService.SubmitTestEvent",
                        "http://169.254.169.254/latest/meta-data/",
                        "http://[fe80::1]:8080/events"):
        refused = send(emulator, "POST", path, json.dumps({"Destination": destination}))
        assert refused.status_code == 400, (destination, refused.text)
        assert error_ids(refused) == ["PropertyValueNotInList"]
    made = send(emulator, "POST", path, json.dumps(
        {"Destination": f"http://hook:s3cr3t-hook@{where}/events", "Context": "hard"}))
    assert made.status_code == 201, made.text
    test_event = send(emulator, "POST",
                      "/redfish/v1/EventService/Actions/EventService.SubmitTestEvent", "{}")
    assert test_event.status_code == 204
    for _ in range(100):  # delivery is asynchronous; 10 s at most
        if bodies:
            break
        threading.Event().wait(0.1)
    assert bodies and json.loads(bodies[0])["Context"] == "hard"
    assert auths == ["Basic " + base64.b64encode(b"hook:s3cr3t-hook").decode()]
    # the destination's user:password reached the receiver as HTTP Basic, never a body or log
    shown = requests.get(f"{emulator.nodes[0].redfish_url}{made.headers['Location']}",
                         auth=(emulator.username, emulator.password), timeout=TIMEOUT)
    assert shown.json()["Destination"] == f"http://***@{where}/events"
    send(emulator, "DELETE", made.headers["Location"], "")
    assert "s3cr3t-hook" not in emulator.stderr + emulator.stdout
