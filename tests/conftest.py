"""Shared fixtures: storage backends (SQLite and PostgreSQL), a running server, e-mail."""

pytest_plugins = ["storage_fixtures", "api_fixtures", "mail_fixtures"]
