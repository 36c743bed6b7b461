"""The Redfish front end: one Flask app served by waitress on one socket per BMC.

Importing this package is cheap on purpose (no Flask, no waitress): `redfish.server` pulls them
in only when a server starts, so the CLI can answer IPMI before Flask has finished importing.
"""

#: WSGI environ key holding the `bmc.node.Node` a request is addressed to (set per socket)
NODE_ENVIRON_KEY = "bmc_emulator.node"
#: WSGI environ key of the connection's local address (set by redfish.server's waitress task)
LOCAL_ADDRESS_KEY = "bmc_emulator.local_address"
