"""The dashboard's service-level tile in headless Chromium names each channel's time as the
deployment sets it (`reports.service_level`), with its target, in Russian and in English;
a channel below its target turns the tile amber."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import test_browser
from api_fixtures import Running, stop
from storage_fixtures import Backend
from test_browser import FAST, playwright_api
from test_reports_browser import dashboard_on_the_scripted_day
from test_reports_service_level import deployment_file, running_with

from acd.storage.store import default_sqlite_url
from acd.web.auth import ACCOUNTS

pytestmark = test_browser.pytestmark
chromium, page = test_browser.chromium, test_browser.page
expect = playwright_api.expect

OFFICE = """reports:
  service_level:
    call: {within: 45s, target: 90%}
    callback: 5m
    web: 15m
    email: 4h
"""


@pytest_asyncio.fixture(loop_scope="module")
async def site(tmp_path: Path) -> AsyncIterator[Running]:
    path = deployment_file(tmp_path / "acd.yaml", OFFICE)
    r = await running_with(Backend("sqlite", default_sqlite_url(tmp_path / "data")), path)
    r.server.app[ACCOUNTS].hasher = FAST
    await r.server.app[ACCOUNTS].create("olga", "olga-password", "supervisor", None, "Ольга Руководитель")
    try:
        yield r
    finally:
        await stop(r)


async def test_the_service_level_tile_names_the_configured_times_and_target(site: Running, page: Any) -> None:
    await dashboard_on_the_scripted_day(site, page)
    sl = page.locator('#kpis [data-kpi="sl"]')
    await expect(sl.locator(".kpi-v")).to_have_text("71%")  # c1, c2, c3, c4 and c7 of 7
    lines = sl.locator(".kpi-sl li")
    await expect(lines).to_have_count(4)
    # calls: c1 and c2 within 45 s, c5 abandoned: 67 %, below the 90 % aimed for
    await expect(lines.nth(0)).to_have_text("Звонок: 67% за 45 с (цель 90%)")
    await expect(lines.nth(1)).to_have_text("Обратный звонок: 0% за 5 мин")
    await expect(lines.nth(3)).to_have_text("E-mail: 100% за 4 ч")
    await expect(sl).to_have_class("kpi warn")
    await expect(lines.nth(0)).to_have_class("warn")

    await page.locator("#lang").click()
    await expect(lines.nth(0)).to_have_text("Call: 67% within 45 s (target 90%)")
    await expect(lines.nth(2)).to_have_text("Web lead: 100% within 15 min")
