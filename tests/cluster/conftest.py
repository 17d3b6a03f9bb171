"""The cluster tests' fixtures (cluster_fixtures.py)."""

from cluster_fixtures import pg_database, pg_schema

__all__ = ["pg_database", "pg_schema"]
