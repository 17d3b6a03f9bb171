"""Adapter: the people's side — sign-in and sessions, the manager panel, the supervisor
dashboard, the admin pages and the website widget, served by the API's aiohttp app.

    app = build_app(services)
    install_web(app, services)     # before the app starts

Importing this package registers its JSON routes with the API's registry (so they share
its roles, errors and OpenAPI document); `install_web` adds the pages, the cookie sign-in,
CORS for the website and the live WebSocket hub.
"""

from __future__ import annotations

from aiohttp import web

from acd.api.app import Services
from acd.storage.accounts import Accounts
from acd.web import auth, live, pages, reports

__all__ = ["install_web"]
_ROUTE_MODULES = (auth, live, pages, reports)  # imported for their @api.add registrations


def install_web(app: web.Application, services: Services) -> None:
    auth.install(app, Accounts(services.store))
    live.install(app, services)
    pages.install(app)
