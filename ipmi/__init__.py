"""IPMI-over-LAN front end: UDP datagrams in, calls on `bmc.node.Node`, datagrams out.

`wire` frames packets, `crypto` holds the RMCP+ cipher suites, `endpoint` is the sans-I/O
session engine of one BMC, `commands/` are the IPMI command handlers, and `server` is the only
module with sockets.
"""
