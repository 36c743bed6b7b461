"""A small client of the Equinix Metal API: the three device calls a BMC needs, with patience.

`GET /devices/{id}`, `PUT /devices/{id}`, `POST /devices/{id}/actions` over one
`requests.Session` (kept-alive connections), the token in the `X-Auth-Token` header.

Every call has a budget, `patience` seconds in all (2 s by default) so that a flapping API never
wedges a node: 5xx answers, timeouts and dropped connections are retried with a growing pause
(0.1 s, 0.2 s, ...) while the budget lasts; a 429 is retried after its Retry-After if that fits
in the budget, else reported at once with the wait the API asked for. 401/403/404/422 are not
retried: each is a BackendError saying what it means. The token never appears in a message or a
log line (it lives only in the session's headers).
"""

from __future__ import annotations

import email.utils
import logging
import time
from http import HTTPStatus
from typing import Any

import requests

from backends.base import BackendError

log = logging.getLogger(__name__)

FIRST_PAUSE = 0.1  # seconds before the first retry; doubles each time
#: the shortest attempt worth making: below this the budget is spent
MIN_ATTEMPT = 0.05
MESSAGE_LIMIT = 300


class MetalApiError(BackendError):
    """The API answered with an error that retrying does not change (`status`: its code)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MetalApi:
    """The API as one device's BMC uses it. Thread-safe (requests.Session is, for this use)."""

    def __init__(self, base_url: str, token: str, token_env: str, *, patience: float = 2.0,
                 user_agent: str = "bmc-emulator") -> None:
        self.base_url = base_url.rstrip("/")
        self.token_env = token_env  # named in errors about the token (the token never is)
        self.patience = patience
        self.session = requests.Session()
        self.session.headers.update({"X-Auth-Token": token, "Accept": "application/json",
                                     "User-Agent": user_agent})

    def __repr__(self) -> str:  # no headers: the token stays out of logs and tracebacks
        return f"MetalApi({self.base_url!r})"

    # -- the calls ----------------------------------------------------------------------------
    def get_device(self, device_id: str) -> dict[str, Any]:
        return self._json(self._call("GET", f"/devices/{device_id}", device_id))

    def update_device(self, device_id: str, **fields: Any) -> dict[str, Any]:
        return self._json(self._call("PUT", f"/devices/{device_id}", device_id, fields))

    def action(self, device_id: str, action: str) -> None:
        self._call("POST", f"/devices/{device_id}/actions", device_id, {"type": action})

    def close(self) -> None:
        self.session.close()

    # -- retries ------------------------------------------------------------------------------
    def _call(self, method: str, path: str, device_id: str, body: Any = None
              ) -> requests.Response:
        start = time.monotonic()
        deadline = start + self.patience
        pause, tries = FIRST_PAUSE, 0
        what = f"Metal API {method} {path}"
        while True:
            tries += 1
            remaining = deadline - time.monotonic()
            try:
                answer = self.session.request(method, self.base_url + path, json=body,
                                              timeout=max(remaining, MIN_ATTEMPT))
            except requests.Timeout:
                problem = "no answer in time"
            except requests.ConnectionError as exc:
                problem = f"connection failed ({_cause(exc)})"
            except requests.RequestException as exc:
                raise BackendError(f"{what}: {_cause(exc)}") from None
            else:
                if answer.status_code < 400:
                    return answer
                self._refuse(answer, what, device_id)  # raises for what retrying cannot fix
                problem = f"{_status(answer)}: {_message(answer)}"
                if answer.status_code == 429:
                    wait = _retry_after(answer)
                    if wait is not None:
                        if time.monotonic() + wait > deadline:
                            raise BackendError(f"{what}: rate limited by the API (429); it "
                                               f"asks to retry after {wait:g} s")
                        pause = max(wait, 0.0)
            now = time.monotonic()
            if now + MIN_ATTEMPT >= deadline:
                raise BackendError(f"{what}: {problem} (gave up after {tries} "
                                   f"{'try' if tries == 1 else 'tries'} in {now - start:.1f} s)")
            # the last pause is cut short so the budget ends with a try, not a wait
            wait = min(pause, deadline - now - MIN_ATTEMPT)
            log.debug("%s: %s; retrying in %.2f s", what, problem, wait)
            time.sleep(wait)
            pause = min(pause * 2, 1.0)

    def _refuse(self, answer: requests.Response, what: str, device_id: str) -> None:
        """MetalApiError for an answer that a retry would not change."""
        status, said = answer.status_code, _message(answer)
        if status == 401:
            message = (f"the API refused the token in ${self.token_env} "
                       f"(401 Unauthorized: {said})")
        elif status == 403:
            message = (f"the token in ${self.token_env} may not manage device {device_id} "
                       f"(403 Forbidden: {said})")
        elif status == 404:
            message = f"device {device_id} does not exist (404 Not Found)"
        elif status == 422:
            message = f"refused (422 Unprocessable Entity: {said})"
        elif 400 <= status < 500 and status != 429:
            message = f"{_status(answer)}: {said}"
        else:
            return
        raise MetalApiError(f"{what}: {message}", status)

    @staticmethod
    def _json(answer: requests.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise BackendError(f"Metal API: the answer to {answer.request.method} "
                               f"{answer.url} is not a JSON object")
        return body


def _status(answer: requests.Response) -> str:
    """"503 Service Unavailable": the standard phrase (servers spell theirs differently)."""
    try:
        return f"{answer.status_code} {HTTPStatus(answer.status_code).phrase}"
    except ValueError:
        return f"{answer.status_code} {answer.reason}"


def _message(answer: requests.Response) -> str:
    """The API's error text (the Error schema: `errors` or `error`), or the body's start."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)[:MESSAGE_LIMIT]
        if body.get("error"):
            return str(body["error"])[:MESSAGE_LIMIT]
    text = answer.text.strip()
    return text[:MESSAGE_LIMIT] if text else "no details"


def _retry_after(answer: requests.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None if absent or unreadable."""
    value = answer.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _cause(exc: BaseException) -> str:
    """The reason of a requests error: urllib3 nests it in the message as "(Caused by ...)"."""
    text = str(exc)
    if "(Caused by " in text:
        text = text.rsplit("(Caused by ", 1)[1].rstrip(")")
    return text[:MESSAGE_LIMIT]
