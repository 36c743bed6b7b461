"""`redfish.tls`, `defaults.redfish_tls` and --tls: who speaks HTTPS, with what, and errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bmc.cli import main
from bmc.config import ConfigError, Overrides, TlsConfig, default_config, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_plain_http_unless_asked() -> None:
    assert all(n.redfish_tls is None and n.redfish_url.startswith("http://")
               for n in default_config().nodes)


def test_the_flag_makes_every_generated_node_https() -> None:
    config = default_config(Overrides(redfish_tls=TlsConfig()))
    assert [n.redfish_url for n in config.nodes] == [
        "https://127.0.0.1:8000", "https://127.0.0.1:8001", "https://127.0.0.1:8002"]


def test_a_nodes_own_setting_wins_over_the_defaults_and_the_flag(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    path = write(tmp_path, f"""
        defaults:
          redfish_tls: {{cert: {tmp_path}/c.pem, key: {tmp_path}/k.pem, names: [bmc.lab]}}
        nodes:
          - name: inherits
          - name: plain
            redfish: {{tls: false}}
          - name: short
            redfish: {{tls: true}}
          - name: own
            redfish: {{tls: {{redirect_http: false, names: [10.0.0.7, "*.lab"]}}}}
    """)
    inherited = TlsConfig(cert=f"{tmp_path}/c.pem", key=f"{tmp_path}/k.pem", names=("bmc.lab",))
    for overrides in (None, Overrides(redfish_tls=TlsConfig())):
        nodes = {n.name: n.redfish_tls for n in load_config(path, overrides).nodes}
        assert nodes["plain"] is None and nodes["own"] == TlsConfig(
            names=("10.0.0.7", "*.lab"), redirect_http=False)
        if overrides is None:
            assert nodes["inherits"] == nodes["short"] == inherited
        else:  # the flag replaces the file's defaults, never a node's own setting
            assert nodes["inherits"] == nodes["short"] == TlsConfig()


@pytest.mark.parametrize(("tls", "expected"), [
    ("{cert: /nonexistent/c.pem, key: /nonexistent/k.pem}",
     "redfish.tls: cert: /nonexistent/c.pem: no such file"),
    ("{cert: /etc/hostname}", "redfish.tls: cert and key go together"),
    ("{names: ['bad name!']}", "redfish.tls.names: 'bad name!' is not a DNS name"),
    ("{enabled: yes-please}", "redfish.tls.enabled: Input should be a valid boolean"),
    ("{ciphers: all}", "redfish.tls.ciphers: unknown key"),
    ("on-sundays", "redfish.tls: must be a mapping"),
])
def test_bad_tls_settings_name_their_line(tmp_path: Path, tls: str, expected: str) -> None:
    path = write(tmp_path, f"""
        nodes:
          - name: a
            redfish:
              tls: {tls}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{path}:4: node 'a': {expected}") for p in problems), problems


def test_cert_without_key_on_the_command_line_is_refused() -> None:
    result = CliRunner().invoke(main, ["serve", "--tls-cert", "/etc/hostname"])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output
