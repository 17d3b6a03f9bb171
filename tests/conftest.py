"""Shared fixtures: storage backends (SQLite and PostgreSQL) and a running server."""

pytest_plugins = ["storage_fixtures", "api_fixtures"]
