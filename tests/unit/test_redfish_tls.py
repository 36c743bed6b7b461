"""HTTPS for Redfish: made certificates, TLS inside waitress's connections, protocol sniffing.

Real TLS clients (requests, the ssl module) against a real RedfishServer on loopback.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish.server import RedfishServer
from redfish.tls import CertificateAuthority, TlsContexts, TlsError, TlsSettings

AUTH = ("admin", "password")


def make_node(name: str) -> Node:
    node = Node(name, MemoryBackend())
    node.users.add(*AUTH)
    return node


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[RedfishServer, int, int, str]]:
    """One HTTPS node and one plain-HTTP node; (server, https port, http port, CA file)."""
    secure, plain = make_node("secure"), make_node("plain")
    server = RedfishServer([("127.0.0.1", 0, secure), ("127.0.0.1", 0, plain)],
                           tls={secure: TlsSettings(address="127.0.0.1")},
                           tls_directory=str(tmp_path / "tls"))
    server.start()
    try:
        assert server.ca_path is not None
        yield server, server.ports[0], server.ports[1], str(server.ca_path)
    finally:
        server.stop()


def client_context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


# -- certificates ---------------------------------------------------------------------------------
def test_lab_ca_is_made_once_kept_private_and_signs_server_certificates(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    authority = CertificateAuthority(directory)
    ca_path = authority.ensure()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    cert_path, key_path = authority.server_certificate(["10.1.2.3", "localhost", "bmc-7.lab"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises if not signed by the lab CA
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "bmc-7.lab"]
    # a second emulator on the same directory keeps the CA and the certificate: clients that
    # trust ca.pem keep trusting it across restarts
    again = CertificateAuthority(directory)
    assert again.ensure().read_bytes() == ca_path.read_bytes()
    assert again.server_certificate(["bmc-7.lab", "10.1.2.3", "localhost"])[0] == cert_path
    assert cert_path.read_bytes() == again.server_certificate(["localhost", "10.1.2.3",
                                                                "bmc-7.lab"])[0].read_bytes()


def test_a_broken_ca_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    directory.mkdir()
    (directory / "ca.pem").write_text("not a certificate")
    (directory / "ca-key.pem").write_text("not a key")
    with pytest.raises(TlsError, match=r"ca\.pem.*cannot read"):
        TlsContexts(directory).check([TlsSettings()])


def test_a_named_certificate_that_cannot_be_used_is_a_start_error(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("junk")
    node = make_node("n")
    server = RedfishServer([("127.0.0.1", 0, node)],
                           tls={node: TlsSettings(cert=str(tmp_path / "c.pem"),
                                                  key=str(tmp_path / "c.pem"))},
                           tls_directory=str(tmp_path / "tls"))
    with pytest.raises(OSError, match=r"c\.pem.*cannot use them"):
        server.start()
    server.stop()


def test_a_given_certificate_and_key_are_served(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "site-ca")  # stands for a site's own CA
    cert, key = authority.server_certificate(["127.0.0.1", "bmc.example.test"])
    node = make_node("n")
    server = RedfishServer([("127.0.0.1", 0, node)],
                           tls={node: TlsSettings(cert=str(cert), key=str(key))},
                           tls_directory=str(tmp_path / "unused"))
    server.start()
    try:
        assert server.ca_path is None  # nothing made
        answer = requests.get(f"https://127.0.0.1:{server.ports[0]}/redfish/v1/Systems/n",
                              auth=AUTH, verify=str(authority.ca_path), timeout=5)
        assert answer.status_code == 200 and answer.json()["Id"] == "n"
        assert not (tmp_path / "unused").exists()
    finally:
        server.stop()


# -- HTTPS --------------------------------------------------------------------------------------
def test_https_answers_and_names_the_address_and_localhost(served: tuple) -> None:
    _server, https, _http, ca = served
    for host in ("127.0.0.1", "localhost"):
        answer = requests.get(f"https://{host}:{https}/redfish/v1/Systems/secure", auth=AUTH,
                              verify=ca, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["@odata.id"] == "/redfish/v1/Systems/secure"


def test_https_keeps_connections_alive_and_carries_writes(served: tuple) -> None:
    _server, https, _http, ca = served
    connection = http.client.HTTPSConnection("127.0.0.1", https, timeout=5,
                                             context=client_context(ca))
    token = None
    try:
        connection.request("POST", "/redfish/v1/SessionService/Sessions",
                           body=b'{"UserName": "admin", "Password": "password"}',
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 201
        token = answer.getheader("X-Auth-Token")
        sock = connection.sock
        for _ in range(20):
            connection.request("PATCH", "/redfish/v1/Systems/secure",
                               body=b'{"Boot": {"BootSourceOverrideTarget": "Pxe"}}',
                               headers={"X-Auth-Token": token,
                                        "Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status in (200, 204)
        assert connection.sock is sock  # one TLS connection for all of it
        connection.request("GET", "/redfish/v1/Systems/secure", headers={"X-Auth-Token": token})
        answer = connection.getresponse()
        assert answer.status == 200
        assert b'"BootSourceOverrideTarget": "Pxe"' in answer.read()
    finally:
        connection.close()


def test_many_https_clients_at_once_get_whole_answers(served: tuple) -> None:
    """Worker threads flush output while the loop thread reads: the TLS state is shared."""
    _server, https, _http, ca = served
    expected = requests.get(f"https://127.0.0.1:{https}/redfish/v1/$metadata", verify=ca,
                            timeout=5).content
    assert len(expected) > 10_000
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", https, timeout=10,
                                                 context=client_context(ca))
        try:
            for _ in range(25):
                connection.request("GET", "/redfish/v1/$metadata")
                answer = connection.getresponse()
                if answer.status != 200 or answer.read() != expected:
                    failures.append(f"{answer.status}")
        except Exception as exc:  # reported below, not lost in a thread
            failures.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []


def test_answers_larger_than_the_socket_buffer_arrive_whole(served: tuple) -> None:
    """A client that reads late: encrypted records wait in the channel, none are lost."""
    _server, https, _http, ca = served
    expected = requests.get(f"https://127.0.0.1:{https}/redfish/v1/$metadata", verify=ca,
                            timeout=5).content
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", https))
    with client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.settimeout(10)
        count = 40  # ~0.5 MB of answers asked for in one go, then read after a pause
        request = b"GET /redfish/v1/$metadata HTTP/1.1\r\nHost: x\r\n\r\n"
        tls.sendall(request * (count - 1) + request.replace(b"\r\n\r\n",
                                                              b"\r\nConnection: close\r\n\r\n"))
        time.sleep(0.5)
        received = bytearray()
        while chunk := tls.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == count
    assert received.count(expected) == count


def test_plain_http_on_the_https_port_is_redirected_at_once(served: tuple) -> None:
    _server, https, _http, _ca = served
    started = time.monotonic()
    answer = requests.post(f"http://127.0.0.1:{https}/redfish/v1/SessionService/Sessions?x=1",
                           json={}, allow_redirects=False, timeout=5)
    assert time.monotonic() - started < 1
    assert answer.status_code == 308  # a POST stays a POST with its body
    assert answer.headers["Location"] == (f"https://127.0.0.1:{https}"
                                          "/redfish/v1/SessionService/Sessions?x=1")
    assert answer.headers["Connection"] == "close"


def test_plain_http_on_the_https_port_without_redirect_gets_a_400(tmp_path: Path) -> None:
    node = make_node("n")
    server = RedfishServer([("127.0.0.1", 0, node)],
                           tls={node: TlsSettings(redirect_http=False)},
                           tls_directory=str(tmp_path))
    server.start()
    try:
        answer = requests.get(f"http://127.0.0.1:{server.ports[0]}/redfish/v1",
                              allow_redirects=False, timeout=5)
        assert answer.status_code == 400 and "https://" in answer.text
        assert "Location" not in answer.headers
    finally:
        server.stop()


def test_tls_on_the_plain_port_is_closed_at_once(served: tuple) -> None:
    _server, _https, http_port, ca = served
    started = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        raw = socket.create_connection(("127.0.0.1", http_port), timeout=10)
        with client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1"):
            pass
    assert time.monotonic() - started < 1
    # and the plain port still answers plain HTTP
    assert requests.get(f"http://127.0.0.1:{http_port}/redfish/v1", timeout=5).ok


def test_failed_handshakes_are_quiet_and_harmless(served: tuple,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    _server, https, _http, ca = served
    caplog.set_level(logging.INFO)
    with pytest.raises(requests.exceptions.SSLError):  # the client does not trust the lab CA
        requests.get(f"https://127.0.0.1:{https}/redfish/v1", verify=True, timeout=5)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():  # the very deprecation this checks the server refuses
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1  # refused: TLS 1.2 at least
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", https), 5) as raw:
        old.wrap_socket(raw)
    with socket.create_connection(("127.0.0.1", https), 5) as raw:  # a handshake of garbage
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        raw.settimeout(5)
        assert raw.recv(100) is not None  # an alert, or the close: at once, not a timeout
    assert requests.get(f"https://127.0.0.1:{https}/redfish/v1", verify=ca, timeout=5).ok
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_nodes_sharing_a_port_each_get_a_certificate_for_their_address(tmp_path: Path) -> None:
    first, second = make_node("first"), make_node("second")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = RedfishServer([("127.0.1.1", port, first), ("127.0.1.2", port, second)],
                           tls={first: TlsSettings(address="127.0.1.1"),
                                second: TlsSettings(address="127.0.1.2")},
                           tls_directory=str(tmp_path))
    server.start()
    try:
        for address, name in (("127.0.1.1", "first"), ("127.0.1.2", "second")):
            answer = requests.get(f"https://{address}:{port}/redfish/v1/Systems", auth=AUTH,
                                  verify=str(server.ca_path), timeout=5)
            assert answer.json()["Members"] == [{"@odata.id": f"/redfish/v1/Systems/{name}"}]
            with socket.create_connection((address, port), 5) as raw, client_context(
                    str(server.ca_path)).wrap_socket(raw, server_hostname=address) as tls:
                cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert str(names.get_values_for_type(x509.IPAddress)[0]) == address
    finally:
        server.stop()


def test_a_node_added_while_serving_can_speak_https(served: tuple, tmp_path: Path) -> None:
    server, _https, _http, ca = served
    late = make_node("late")
    port = server.add("127.0.0.1", 0, late, tls=TlsSettings())
    answer = requests.get(f"https://localhost:{port}/redfish/v1/Systems", auth=AUTH, verify=ca,
                          timeout=5)
    assert answer.json()["Members"] == [{"@odata.id": "/redfish/v1/Systems/late"}]
    assert server.remove(late)
    assert late not in server.tls


def test_emulators_sharing_a_directory_agree_on_one_ca(tmp_path: Path) -> None:
    """Shards of one fleet on one host may share a state directory: started at once, they
    make one CA (and one server key) between them, never a key of one with another's CA."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from redfish.tls import CertificateAuthority;"
            "a = CertificateAuthority(Path(sys.argv[1]));"
            "cert, key = a.server_certificate(['127.0.0.1']);"
            "print(a.ca_path.read_text().strip().splitlines()[1], key.read_text()[40:80])")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tls")],
                                  stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
                 for _ in range(6)]
    outputs = {p.communicate(timeout=60)[0] for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert len(outputs) == 1  # the same CA and key seen by all six
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.pem").read_bytes())
    cert_path = next(p for p in (tmp_path / "tls").glob("server-*.pem")
                     if p.name != "server-key.pem")
    x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(ca)
