"""The DMTF conformance tools against a real `bmc-emulator serve` on free loopback ports.

* Redfish-Service-Validator: every resource against the CSDL schemas: 0 failures;
* Redfish-Protocol-Validator against a node on HTTPS (made certificate, the lab CA given as
  its CA bundle): no failures, the HTTPS-only assertions included;
* Redfish-Interop-Validator with OpenStack Ironic's profile: pass.

The schemas come from `../shared/redfish-schema` beside the repository (CI has it; this
machine cannot reach redfish.dmtf.org); without it the service validator fetches them itself.
The service and protocol validators run at the same time, each on its own node (the protocol
validator creates and deletes accounts and sessions, which would disturb the other's crawl).
Each run is bounded by VALIDATOR_TIMEOUT.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Emulator, Launcher

SHARED = REPO.parent / "shared"
SCHEMAS = SHARED / "redfish-schema" / "csdl"
PROFILE = SHARED / "conformance" / "OpenStackIronicProfile.v1_2_0.json"
VALIDATOR_TIMEOUT = 180
#: what only a service on HTTPS can pass: they must pass (and be tested) on the HTTPS node
HTTPS_ONLY = {"SEC_BASIC_AUTH_OVER_HTTPS", "SEC_SESSION_CREATE_HTTPS_ONLY"}
_SUMMARY = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|$", re.M)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    workdir = tmp_path_factory.mktemp("validators")
    launcher = Launcher(workdir)
    # the protocol validator's node speaks HTTPS, as real BMCs do (its HTTPS assertions)
    yield launcher(nodes=[{"name": "service"}, {"name": "protocol", "redfish": {"tls": True}}],
                   log_level="warning", args=["--state-dir", str(workdir / "state")])
    launcher.close()


def tool(name: str) -> str:
    """A validator from the conformance venv scripts/test.sh makes (BMC_CONFORMANCE_BIN).

    They live apart from the project: DMTF's `redfish` library they need has a top-level
    package `redfish` that would shadow ours.
    """
    bin_dir = os.environ.get("BMC_CONFORMANCE_BIN", str(REPO / ".venv-conformance" / "bin"))
    path = shutil.which(name, path=bin_dir)
    assert path, (f"{name} is not in {bin_dir}: run scripts/test.sh, or pip install -r "
                  "tests/conformance-requirements.txt into that venv")
    return path


def summary(output: str) -> tuple[int, int, int, int]:
    """(pass, warn, fail, not tested) from a DMTF validator's closing table."""
    found = _SUMMARY.findall(output)
    assert found, f"no result table in the validator's output:\n{output[-3000:]}"
    passed, warned, failed, untested = (int(n) for n in found[-1])
    return passed, warned, failed, untested


def failures(logdir: Path, pattern: str) -> list[str]:
    lines = []
    for log in logdir.rglob(pattern):
        lines += [line.split(" - ", 2)[-1] for line in log.read_text(errors="replace")
                  .splitlines() if " ERROR - " in line]
    return lines


def run(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own CA bundle:
    # left in, they would hide the lab CA given with --ca-bundle
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, env=env)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=VALIDATOR_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"{process.args[0]} ran over {VALIDATOR_TIMEOUT}s:\n"
                             f"{output[-3000:]}") from None
    return process.returncode, output


def test_service_and_protocol_validators(served: Emulator, tmp_path: Path) -> None:
    service_node, protocol_node = served.nodes
    credentials = ["-u", served.username, "-p", served.password]
    service_args = [tool("rf_service_validator"), "-r", service_node.redfish_url, *credentials,
                    "--authtype", "Basic", "--logdir", str(tmp_path / "service")]
    if SCHEMAS.is_dir():
        service_args += ["--schema_directory", str(SCHEMAS)]
    service = run(service_args, tmp_path)
    assert protocol_node.redfish_url.startswith("https://")
    protocol = run([tool("rf_protocol_validator"), "-r", protocol_node.redfish_url,
                    *credentials, "--report-dir", str(tmp_path / "protocol"),
                    "--report-type", "tsv", "--ca-bundle", served.ca_path], tmp_path)
    service_rc, service_out = finish(service)
    protocol_rc, protocol_out = finish(protocol)

    passed, _, failed, _ = summary(service_out)
    assert failed == 0 and service_rc == 0, \
        "\n".join(failures(tmp_path / "service", "*Debug*.log")) or service_out[-3000:]
    assert passed > 1000  # it did look at the whole service

    (report,) = (tmp_path / "protocol").glob("*.tsv")
    with report.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) > 300, protocol_out[-3000:]
    failed_rows = [f"{r['Assertion']} {r['Method']} {r['URI']}: {r['Message']}"
                   for r in rows if r["Result"] == "FAIL"]
    assert not failed_rows, "\n".join(failed_rows)
    assert {r["Assertion"] for r in rows if r["Result"] == "PASS"} >= HTTPS_ONLY
    assert protocol_rc == 0, protocol_out[-3000:]


# CI always has ../shared beside the clone: only elsewhere may the profile be missing
@pytest.mark.skipif(not PROFILE.exists() and not os.environ.get("CI"), reason=f"no {PROFILE}")
def test_interop_validator_with_ironics_profile(served: Emulator, tmp_path: Path) -> None:
    node = served.nodes[0]
    rc, output = finish(run([tool("rf_interop_validator"), "-r", node.redfish_url,
                             "-u", served.username, "-p", served.password,
                             "--authtype", "Session", "--logdir", str(tmp_path),
                             str(PROFILE)], tmp_path))
    passed, _, failed, _ = summary(output)
    assert failed == 0 and rc == 0, \
        "\n".join(failures(tmp_path, "*Debug*.log")) or output[-3000:]
    assert passed > 100
