"""A page left open when its session's lifetime runs out (acd.web.auth.SESSION_LIFETIME) goes
to the sign-in page as the live feed closes with 4001, in headless Chromium, instead of
reconnecting to be refused until the page's next API call."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
import test_browser
from api_fixtures import Running
from test_browser import sign_in

from acd.web.auth import SESSION_LIFETIME, SESSIONS

pytestmark = test_browser.pytestmark
chromium, site, page = test_browser.chromium, test_browser.site, test_browser.page


async def test_the_dashboard_goes_to_sign_in_when_the_session_ends(site: Running, page: Any) -> None:
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    async with site.server.services.store._engine.begin() as conn:  # signed in a week ago, but 3 s
        await conn.execute(
            sa.text("UPDATE web_sessions SET created_at = :at WHERE username = 'olga'"),
            {"at": time.time() - SESSION_LIFETIME + 3},
        )
    site.server.app[SESSIONS].clear()  # past the few seconds a looked-up session is trusted
    await page.reload()  # the feed connects knowing the session's end
    await page.wait_for_url("**/login?next=%2Fdashboard", timeout=10_000)
