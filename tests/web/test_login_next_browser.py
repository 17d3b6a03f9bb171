"""The sign-in page's `next` in headless Chromium: only a page of this site is followed after
signing in (`/login?next=/%5Cevil.example/` sent the browser to evil.example)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import test_browser
from api_fixtures import Running

pytestmark = test_browser.pytestmark
chromium, site, page = test_browser.chromium, test_browser.site, test_browser.page


async def test_signing_in_never_sends_the_browser_to_another_site(site: Running, page: Any) -> None:
    elsewhere: list[str] = []

    async def route(request: Any) -> None:
        if urlsplit(request.request.url).hostname == "evil.example":
            elsewhere.append(request.request.url)
            await request.abort()
        else:
            await request.continue_()

    await page.route("**/*", route)
    # "/\\evil.example" and "/<tab>/evil.example" are "//evil.example" to the browser
    for asked, lands in (
        ("/%5Cevil.example/", "/panel"),
        ("/%09/evil.example/", "/panel"),
        ("//evil.example/", "/panel"),
        ("%2Fpanel%3Fx%3D1%23top", "/panel?x=1#top"),  # a page of the site, whole
    ):
        # off the panel first: signed out under it, its next call would go to /login?next=/panel
        await page.goto("about:blank")
        await page.context.clear_cookies()
        await page.goto(site.url(f"/login?next={asked}"))
        await page.fill("#username", "anna")
        await page.fill("#password", "anna-password")
        await page.click("button[type=submit]")
        await page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
        assert page.url == site.url(lands), (asked, page.url)
    assert elsewhere == []
