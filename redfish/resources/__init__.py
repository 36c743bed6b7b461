"""Redfish resources: one module per resource family, each a Flask blueprint `bp`."""
