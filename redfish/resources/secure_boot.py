"""`Systems/<id>/SecureBoot`: the UEFI Secure Boot switch, its mode, `ResetKeys` and the key
databases (`SecureBootDatabases`: PK, KEK, db, dbx and their read-only factory defaults).

A change of `SecureBootEnable` takes effect at the next boot, as on real firmware:
`SecureBootCurrentBoot` says whether the running boot was verified.

The databases' `Certificates`/`Signatures` collections are not modelled (a database holds its
factory keys or nothing), so they are not linked.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from bmc.node import Node
from bmc.secure_boot import (
    DATABASE_RESET_TYPES,
    DEFAULT_DATABASES,
    DESCRIPTIONS,
    RESET_KEYS_TYPES,
    SecureBootError,
)
from redfish import context, odata, paths
from redfish.errors import error
from redfish.odata import Body, link
from redfish.patching import Prop, Shape, check_if_match, parse_action, parse_patch, with_ignored
from redfish.resources.systems import system_node

log = logging.getLogger(__name__)

bp = Blueprint("secure_boot", __name__)

RESET_KEYS_ACTION = "#SecureBoot.ResetKeys"
DATABASE_RESET_ACTION = "#SecureBootDatabase.ResetKeys"
SHAPE: Shape = {"SecureBootEnable": Prop(bool)}


def secure_boot_body(node: Node) -> Body:
    uri = f"{paths.system(node)}/SecureBoot"
    secure_boot = node.secure_boot
    return odata.resource(
        "SecureBoot", uri,
        Id="SecureBoot",
        Name="UEFI Secure Boot",
        Description=f"UEFI Secure Boot of {node.name}",
        SecureBootEnable=secure_boot.enabled,
        SecureBootCurrentBoot=secure_boot.current_boot,
        SecureBootMode=secure_boot.mode,
        SecureBootDatabases=link(f"{uri}/SecureBootDatabases"),
        Actions={RESET_KEYS_ACTION: {
            "target": f"{uri}/Actions/SecureBoot.ResetKeys",
            "ResetKeysType@Redfish.AllowableValues": list(RESET_KEYS_TYPES),
        }},
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/SecureBoot")
def get_secure_boot(system_id: str) -> Response:
    return odata.json_response(secure_boot_body(system_node(system_id)))


@bp.patch(f"{paths.SYSTEMS}/<system_id>/SecureBoot")
def patch_secure_boot(system_id: str) -> Response:
    node = system_node(system_id)
    context.require("ConfigureComponents")
    body = context.json_body()
    with context.state().write_lock:
        current = secure_boot_body(node)
        check_if_match(current)
        patch = parse_patch(body, SHAPE, current)
        enable = patch.changes["SecureBootEnable"]
        try:
            node.secure_boot.set_enabled(enable)
        except SecureBootError:
            raise error(400, "PropertyValueResourceConflict", "SecureBootEnable", "true",
                        paths.system(node), related="#/SecureBootEnable") from None
    log.info("%s: Secure Boot %s by %s (from the next boot)", node.name,
             "enabled" if enable else "disabled", context.principal().user.name)
    return odata.json_response(with_ignored(secure_boot_body(node), patch))


@bp.post(f"{paths.SYSTEMS}/<system_id>/SecureBoot/Actions/SecureBoot.ResetKeys")
def reset_keys(system_id: str) -> Response:
    node = system_node(system_id)
    context.require("ConfigureComponents")
    params = parse_action(context.action_body(), RESET_KEYS_ACTION, {
        "ResetKeysType": Prop(str, RESET_KEYS_TYPES, required=True)})
    node.secure_boot.reset_keys(params["ResetKeysType"])
    log.info("%s: Secure Boot keys reset (%s) by %s", node.name, params["ResetKeysType"],
             context.principal().user.name)
    return Response(status=204)


# -- the key databases ---------------------------------------------------------------------------
def _databases_uri(node: Node) -> str:
    return f"{paths.system(node)}/SecureBoot/SecureBootDatabases"


@bp.get(f"{paths.SYSTEMS}/<system_id>/SecureBoot/SecureBootDatabases")
def get_databases(system_id: str) -> Response:
    node = system_node(system_id)
    uri = _databases_uri(node)
    return odata.json_response(odata.collection(
        "SecureBootDatabaseCollection", uri, "UEFI Secure Boot Database Collection",
        [f"{uri}/{name}" for name in node.secure_boot.databases()]))


def _database(node: Node, database_id: str) -> str:
    if database_id not in node.secure_boot.databases():
        raise context.missing()
    return database_id


def database_body(node: Node, database: str) -> Body:
    uri = f"{_databases_uri(node)}/{database}"
    base = database.removesuffix("Default")
    default = database in DEFAULT_DATABASES
    keys = "factory keys" if node.secure_boot.has_keys(database) else "no keys"
    actions: Body = {} if default else {DATABASE_RESET_ACTION: {
        "target": f"{uri}/Actions/SecureBootDatabase.ResetKeys",
        "ResetKeysType@Redfish.AllowableValues": list(DATABASE_RESET_TYPES),
    }}
    return odata.resource(
        "SecureBootDatabase", uri,
        Id=database,
        Name=f"{database} Database",
        Description=(f"UEFI {DESCRIPTIONS[base]}{' (factory default)' if default else ''}; "
                     f"holds {keys}"),
        DatabaseId=database,
        Actions=actions,
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/SecureBoot/SecureBootDatabases/<database_id>")
def get_database(system_id: str, database_id: str) -> Response:
    node = system_node(system_id)
    return odata.json_response(database_body(node, _database(node, database_id)))


@bp.post(f"{paths.SYSTEMS}/<system_id>/SecureBoot/SecureBootDatabases/<database_id>"
         "/Actions/SecureBootDatabase.ResetKeys")
def reset_database(system_id: str, database_id: str) -> Response:
    node = system_node(system_id)
    database = _database(node, database_id)
    context.require("ConfigureComponents")
    if database in DEFAULT_DATABASES:
        raise error(400, "ActionNotSupported", DATABASE_RESET_ACTION)
    params = parse_action(context.action_body(), DATABASE_RESET_ACTION, {
        "ResetKeysType": Prop(str, DATABASE_RESET_TYPES, required=True)})
    node.secure_boot.reset_database(database, params["ResetKeysType"])
    log.info("%s: Secure Boot database %s reset (%s) by %s", node.name, database,
             params["ResetKeysType"], context.principal().user.name)
    return Response(status=204)
