"""The dashboard's export links in headless Chromium: in Russian they download the CSV for
Excel (";" between cells, decimal comma, dates day first), the day report's table of managers
among them; in English the plain CSV. On the scripted day of tests/test_reports_day.py."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import test_browser
from api_fixtures import Running
from test_browser import playwright_api
from test_reports_browser import dashboard_on_the_scripted_day

pytestmark = test_browser.pytestmark
chromium, site, page = test_browser.chromium, test_browser.site, test_browser.page
expect = playwright_api.expect


async def test_export_links_offer_the_csv_for_excel_in_russian_and_the_plain_csv_in_english(
    site: Running, page: Any
) -> None:
    day = await dashboard_on_the_scripted_day(site, page)
    await page.locator("#date").dispatch_event("change")
    managers = page.locator("#export-managers")
    await expect(managers).to_have_text("Менеджеры CSV")
    for what in ("contacts", "decisions", "managers"):
        await expect(page.locator(f"#export-{what}")).to_have_attribute(
            "href", f"/api/export/{what}.csv?date={day}&excel=1"
        )
    await expect(managers).to_have_attribute(
        "title", "CSV для Excel: столбцы через «;», десятичная запятая, даты ДД.ММ.ГГГГ"
    )

    async with page.expect_download() as info:
        await managers.click()
    download = await info.value
    assert download.suggested_filename == f"managers-{day}.csv"
    body = Path(await download.path()).read_bytes()
    assert body.startswith("\ufeff".encode())
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")), delimiter=";")}
    assert (rows["anna"]["response_average_seconds"], rows["anna"]["won_amount"]) == ("480,7", "200000,0")

    async with page.expect_download() as info:
        await page.locator("#export-contacts").click()
    text = Path(await (await info.value).path()).read_text("utf-8-sig")
    assert text.startswith("id;arrived_at;") and f";{day:%d.%m.%Y} 10:00:00;" in text

    await page.locator("#lang").click()
    await expect(managers).to_have_text("Managers CSV")
    for what in ("contacts", "decisions", "managers"):
        await expect(page.locator(f"#export-{what}")).to_have_attribute("href", f"/api/export/{what}.csv?date={day}")
    async with page.expect_download() as info:
        await managers.click()
    text = Path(await (await info.value).path()).read_text("utf-8-sig")
    assert text.startswith("id,name,offered,") and ",480.7," in text
