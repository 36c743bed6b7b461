"""`defaults.redfish_event_destinations` and `defaults.redfish_session_user_limit` reach the
Redfish service of `bmc-emulator serve`, and a bad value is refused naming file, line and
field."""

from __future__ import annotations

import requests
from conftest import Launcher

TIMEOUT = 10
SESSIONS = "/redfish/v1/SessionService/Sessions"


def test_config_keys_reach_the_redfish_service(emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=1, defaults={"redfish_event_destinations": ["10.0.0.0/8"],
                                              "redfish_session_user_limit": 2})
    url, admin = bmc.nodes[0].redfish_url, (bmc.username, bmc.password)
    subscriptions = f"{url}/redfish/v1/EventService/Subscriptions"
    refused = requests.post(subscriptions, auth=admin, timeout=TIMEOUT,
                            json={"Destination": "http://127.0.0.1:9/events"})
    assert refused.status_code == 400 and "Destination" in refused.text, refused.text
    allowed = requests.post(subscriptions, auth=admin, timeout=TIMEOUT,
                            json={"Destination": "http://10.1.2.3:9/events"})
    assert allowed.status_code == 201, allowed.text

    tokens = []
    for _ in range(3):  # the user's third session evicts its least recently used
        login = requests.post(f"{url}{SESSIONS}", timeout=TIMEOUT,
                              json={"UserName": bmc.username, "Password": bmc.password})
        assert login.status_code == 201, login.text
        tokens.append(login.headers["X-Auth-Token"])
    alive = [requests.get(f"{url}{SESSIONS}", headers={"X-Auth-Token": t},
                          timeout=TIMEOUT).status_code == 200 for t in tokens]
    assert alive == [False, True, True]


def test_bad_values_are_refused_with_file_line_and_field(emulator_factory: Launcher) -> None:
    config = emulator_factory.write_config(
        "defaults:\n  redfish_event_destinations: [10.0.0.0/8, nowhere]\n"
        "  redfish_session_user_limit: 0\n")
    result = emulator_factory.run_to_exit(["--config", str(config)])
    assert result.returncode == 2, result.stderr
    assert (f"{config}:2: defaults.redfish_event_destinations: 'nowhere' is not a network"
            in result.stderr), result.stderr
    assert f"{config}:3: defaults.redfish_session_user_limit: 0 is out of range 1..64" \
        in result.stderr
