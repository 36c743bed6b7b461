"""HTTPS end to end: `serve --tls` with curl, sushy and a restart that keeps the lab CA."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import sushy
from conftest import Launcher
from websockets.sync.client import connect

from redfish.tls import CertificateAuthority

pytestmark = pytest.mark.skipif(shutil.which("curl") is None and not os.environ.get("CI"),
                                reason="curl is not installed (scripts/test.sh installs it)")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    # --noproxy: loopback only; no CURL_CA_BUNDLE from the environment either
    return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
                          capture_output=True, text=True, timeout=20,
                          env={"PATH": "/usr/bin:/bin"})


def test_tls_flag_serves_https_that_curl_and_sushy_trust(emulator_factory: Launcher,
                                                        tmp_path: Path) -> None:
    state = tmp_path / "state"
    bmc = emulator_factory(nodes=2, defaults={"redfish_tls": True},
                           args=["--state-dir", str(state)])
    node = bmc.nodes[0]
    assert node.redfish_url.startswith("https://127.0.0.1:")
    assert "REDFISH" in bmc.stdout and node.redfish_url in bmc.stdout
    ca = bmc.ca_path
    assert ca == str(state / "tls" / "ca.pem")
    port = node.redfish_url.rsplit(":", 1)[1]

    for host in ("127.0.0.1", "localhost"):
        answer = curl("--cacert", ca, "-u", f"{bmc.username}:{bmc.password}",
                      f"https://{host}:{port}/redfish/v1/Systems/{node.name}")
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["Id"] == node.name
    # without the CA: refused by the client (a self-made certificate is not a public one)
    untrusted = curl(f"https://127.0.0.1:{port}/redfish/v1")
    assert untrusted.returncode == 60, untrusted.stderr  # curl: peer certificate not trusted
    # plain HTTP on the HTTPS port: redirected, and curl lands on HTTPS (credentials kept:
    # --location-trusted, as curl sends none to another origin otherwise)
    followed = curl("--location-trusted", "--cacert", ca, "-u",
                    f"{bmc.username}:{bmc.password}", "-o", "/dev/null",
                    "-w", "%{url_effective} %{http_code}",
                    f"http://127.0.0.1:{port}/redfish/v1/Systems")
    assert followed.stdout == f"https://127.0.0.1:{port}/redfish/v1/Systems 200"

    client = sushy.Sushy(f"{node.redfish_url}/redfish/v1", username=bmc.username,
                         password=bmc.password, verify=ca)
    system = client.get_system(f"/redfish/v1/Systems/{node.name}")
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE,
                                   enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS)
    system.reset_system(sushy.RESET_ON)
    system.refresh()
    assert system.power_state == sushy.SYSTEM_POWER_STATE_ON
    assert system.boot.target == sushy.BOOT_SOURCE_TARGET_PXE
    client._auth.close()  # log out while the server is up (sushy retries a dead one at exit)

    # a restart on the same state directory keeps the CA: clients keep trusting the BMCs
    ca_bytes = Path(ca).read_bytes()
    bmc.stop()
    again = emulator_factory([{"name": n.name, "redfish": {"port": int(
        n.redfish_url.rsplit(":", 1)[1])}} for n in bmc.nodes],
        defaults={"redfish_tls": True}, args=["--state-dir", str(state)])
    assert Path(again.ca_path).read_bytes() == ca_bytes
    answer = curl("--cacert", ca, "-u", f"{bmc.username}:{bmc.password}",
                  f"https://127.0.0.1:{port}/redfish/v1/Systems/{node.name}")
    assert answer.returncode == 0 and json.loads(answer.stdout)["Boot"][
        "BootSourceOverrideTarget"] == "Pxe"


def test_given_certificate_and_plain_nodes_side_by_side(emulator_factory: Launcher,
                                                        tmp_path: Path) -> None:
    site = CertificateAuthority(tmp_path / "site-ca")  # stands for a site's own CA
    cert, key = site.server_certificate(["127.0.0.1", "bmc.lab.test"])
    bmc = emulator_factory([{"name": "signed", "redfish": {"tls": {"cert": str(cert),
                                                                    "key": str(key)}}},
                            {"name": "plain"}])
    signed, plain = bmc.nodes
    assert signed.redfish_url.startswith("https://") and plain.redfish_url.startswith("http://")
    assert "signed by" not in bmc.stdout  # nothing made, no lab CA to trust
    answer = curl("--cacert", str(site.ca_path), f"{signed.redfish_url}/redfish/v1")
    assert answer.returncode == 0 and json.loads(answer.stdout)["Id"] == "RootService"
    answer = curl(f"{plain.redfish_url}/redfish/v1")
    assert answer.returncode == 0 and json.loads(answer.stdout)["Id"] == "RootService"
    # a TLS client on the plain port fails at once (curl: TLS error), not after a timeout
    https_on_plain = curl("--cacert", str(site.ca_path), "-w", "%{time_total}",
                          plain.redfish_url.replace("http://", "https://") + "/redfish/v1")
    assert https_on_plain.returncode in (35, 56), https_on_plain.stderr
    assert float(https_on_plain.stdout or 0) < 1.0


def test_a_missing_certificate_is_a_config_error_naming_the_line(emulator_factory: Launcher,
                                                                  tmp_path: Path) -> None:
    config = emulator_factory.write_config(
        "nodes:\n  - name: a\n    redfish:\n      tls:\n        cert: /nonexistent/c.pem\n"
        "        key: /nonexistent/k.pem\n")
    result = emulator_factory.run_to_exit(["--config", str(config)])
    assert result.returncode == 2
    assert f"{config}:4: node 'a': redfish.tls: cert: /nonexistent/c.pem: no such file" \
        in result.stderr


def test_the_console_of_an_https_node_is_wss_with_the_same_ca(emulator_factory: Launcher,
                                                              tmp_path: Path) -> None:
    port = emulator_factory.free_port("tcp")
    bmc = emulator_factory(
        [{"name": "box", "backend": {"type": "process", "command": ["/bin/cat"],
                                     "power_on": True},
          "redfish": {"tls": True},
          "console": {"websocket": {"address": emulator_factory.host, "port": port}}}],
        args=["--state-dir", str(tmp_path / "state")])
    node = bmc.nodes[0]
    assert f"wss://127.0.0.1:{port}" in bmc.stdout
    answer = curl("--cacert", bmc.ca_path, "-u", f"{bmc.username}:{bmc.password}",
                  f"{node.redfish_url}/redfish/v1/Managers/BMC")
    url = json.loads(answer.stdout)["Oem"]["BmcEmulator"]["SerialConsoleWebSocket"]
    assert url == f"wss://127.0.0.1:{port}/redfish/v1/Managers/BMC/SerialConsole/WebSocket"
    token = base64.b64encode(f"{bmc.username}:{bmc.password}".encode()).decode()
    with connect(url, ssl=ssl.create_default_context(cafile=bmc.ca_path), open_timeout=10,
                 additional_headers={"Authorization": f"Basic {token}"}) as ws:
        ws.send(b"over-tls\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"over-tls" not in seen and time.monotonic() < deadline:
            message = ws.recv(timeout=deadline - time.monotonic())
            seen += message if isinstance(message, bytes) else message.encode()
        assert b"over-tls" in seen  # /bin/cat echoed it back through the console
