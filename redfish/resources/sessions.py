"""SessionService: log in (POST Sessions, no credentials needed), look at and end sessions."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import Blueprint, Response, request

from redfish import context, odata, paths
from redfish.auth import Principal, Session, SessionLimitReached, login
from redfish.errors import error, unauthorized
from redfish.odata import Body, link

log = logging.getLogger(__name__)

bp = Blueprint("sessions", __name__)


def session_body(session: Session) -> Body:
    created = datetime.fromtimestamp(session.created, UTC)
    return odata.resource(
        "Session", paths.session(session.id),
        Id=session.id,
        Name="User Session",
        Description="Redfish user session",
        UserName=session.user_name,
        SessionType="Redfish",
        ClientOriginIPAddress=session.client_address,
        CreatedTime=created.isoformat(timespec="seconds"),
        Password=None,  # the schema requires null on read
    )


def _visible(caller: Principal, session: Session) -> bool:
    # own sessions always; everyone's with ConfigureManager (administrators)
    return session.user_id == caller.user.user_id or caller.has("ConfigureManager")


@bp.get(paths.SESSION_SERVICE)
def session_service() -> Response:
    return odata.json_response(odata.resource(
        "SessionService", paths.SESSION_SERVICE,
        Id="SessionService",
        Name="Session Service",
        Description="Session Service",
        ServiceEnabled=True,
        SessionTimeout=int(context.state().sessions.timeout),
        Status={"State": "Enabled", "Health": "OK"},
        Sessions=link(paths.SESSIONS),
    ))


@bp.get(paths.SESSIONS)
def sessions() -> Response:
    caller = context.principal()
    members = [paths.session(s.id) for s in context.state().sessions.all()
               if _visible(caller, s)]
    return odata.json_response(odata.collection(
        "SessionCollection", paths.SESSIONS, "Session Collection", members))


@bp.post(paths.SESSIONS)
def create_session() -> Response:
    body = context.json_body()
    credentials: list[str] = []
    for name in ("UserName", "Password"):
        if name not in body:
            raise error(400, "PropertyMissing", name, related=f"#/{name}")
        value = body[name]
        if not isinstance(value, str):
            shown = "(hidden)" if name == "Password" else json.dumps(value)
            raise error(400, "PropertyValueTypeError", shown, name, related=f"#/{name}")
        credentials.append(value)
    node = context.node()
    user = login(node.users, *credentials, lockout=node.lockout,
                 source=request.remote_addr or "")
    if user is None:
        log.info("%s: Redfish login refused for %r", node.name, credentials[0])
        raise unauthorized()
    try:
        session, token = context.state().sessions.create(user, request.remote_addr or "")
    except SessionLimitReached:
        log.warning("%s: Redfish login of %s refused: all sessions are held by other users",
                    node.name, user.name)
        raise error(503, "CreateLimitReachedForResource", headers={"Retry-After": "60"},
                    resolution="Wait for other users' sessions to end or expire, or ask an "
                               "administrator to delete some, and retry.") from None
    log.info("%s: session %s opened for %s", node.name, session.id, user.name)
    uri = paths.session(session.id)
    return odata.json_response(session_body(session), status=201,
                               headers={"X-Auth-Token": token, "Location": uri})


@bp.get(f"{paths.SESSIONS}/<session_id>")
def get_session(session_id: str) -> Response:
    session = context.state().sessions.get(session_id)
    if session is None or not _visible(context.principal(), session):
        raise context.missing()
    return odata.json_response(session_body(session))


@bp.delete(f"{paths.SESSIONS}/<session_id>")
def delete_session(session_id: str) -> Response:
    sessions = context.state().sessions
    session = sessions.get(session_id)
    if session is None or not _visible(context.principal(), session):
        raise context.missing()
    sessions.delete(session_id)
    log.info("%s: session %s closed", context.node().name, session_id)
    return Response(status=204)
