"""Data access committees: settings, grants, memberships, registered access, CLI and REST API."""
