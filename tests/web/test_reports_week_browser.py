"""The supervisor's report of a week and of a month in headless Chromium: the period switch
next to the date, the week's numbers in the tiles and its days in a table with the week's
own total, the week's table of managers with the conversion spelled out, the leaders of the
week against the week before, and the exports of the period; in Russian and in English. On
the scripted week of tests/test_reports_week.py."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import test_browser
from api_fixtures import Running
from test_browser import playwright_api, sign_in
from test_reports_week import scripted_week

from acd.api.crm import CRM
from acd.crm.model import Customer, Deal, DealStatus

pytestmark = test_browser.pytestmark
chromium, site, page = test_browser.chromium, test_browser.site, test_browser.page
expect = playwright_api.expect


async def test_the_week_s_numbers_days_managers_and_exports_by_the_period_switch(site: Running, page: Any) -> None:
    zone = ZoneInfo(site.server.deployment.tz)
    today = datetime.fromtimestamp(site.server.services.clock(), zone).date()
    monday = today - timedelta(days=today.weekday() + 35)
    wednesday = monday + timedelta(days=2)
    await scripted_week(site.server.store, monday, zone)
    noon = datetime(wednesday.year, wednesday.month, wednesday.day, 12, tzinfo=zone).timestamp()
    await site.server.app[CRM].repo.save_customers_and_deals(
        [Customer(id="k1", name="ООО «Ромашка»")],
        [
            Deal("a1", "k1", amount=150_000, owner="anna", status=DealStatus.WON, opened_at=noon - 60, closed_at=noon),
            Deal(
                "b1", "k1", amount=90_000, owner="boris", status=DealStatus.WON, opened_at=0, closed_at=noon - 7 * 86400
            ),
        ],
        [],
    )
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    await page.locator("#date").fill(wednesday.isoformat())
    await page.locator("#date").dispatch_event("change")
    await expect(page.locator("#perf-h")).to_have_text("Итоги дня по менеджерам")
    await expect(page.locator("#days")).to_be_empty()  # a day has no table of days

    await page.locator("#period").select_option("week")
    await expect(page.locator("#perf-h")).to_have_text("Итоги недели по менеджерам")
    sl = page.locator('#kpis [data-kpi="sl"]')
    await expect(sl.locator(".kpi-v")).to_have_text("40%")
    await expect(sl.locator(".kpi-k")).to_contain_text("уровень сервиса за ")
    await expect(page.locator('#kpis [data-kpi="total"] .kpi-v')).to_have_text("5")
    days = page.locator("#days tbody tr")
    await expect(days).to_have_count(8)
    await expect(days.nth(7)).to_contain_text("Итого")
    assert (await days.nth(7).locator("td").all_inner_texts())[1:6] == ["5", "4", "1", "40%", "15 ч 48 мин"]
    assert (await days.nth(3).locator("td").all_inner_texts())[1:5] == ["0", "0", "0", "—"]  # Thursday
    perf = page.locator("#perf")
    await expect(perf.locator("tbody tr")).to_have_count(2)
    await expect(perf.locator("tbody tr").nth(0)).to_contain_text("100%")  # anna: won 2 of 2 closed
    await expect(perf.locator("tbody tr").nth(0)).to_contain_text(f"{wednesday:%d.%m}")  # her missed w3's day
    await expect(page.locator("#conversion-note")).to_contain_text("выиграно / (выиграно + проиграно)")
    await expect(perf.locator('th[title="выиграно / (выиграно + проиграно)"]')).to_have_text("Конверсия")
    await expect(page.locator("#charts figcaption").nth(2)).to_have_text("Обращения по дням")
    await expect(page.locator("#leaders-hint")).to_contain_text("за неделю (пн–вс)")
    leaders = page.locator("#leaders")
    await expect(leaders.locator("thead th")).to_have_count(5)  # no column of the day
    await expect(leaders.locator("thead")).to_contain_text("Неделей ранее")
    await expect(leaders.locator('figure[data-chart="chart.leaders_period"] figcaption')).to_have_text(
        "Выиграно за период по менеджерам"
    )
    await expect(leaders.locator("tbody tr").nth(0)).to_contain_text("150 000 · сделок: 1")
    await expect(leaders.locator('tbody tr[data-manager="boris"]')).to_contain_text("▼ −100%")

    summary = page.locator("#export-summary")
    await expect(summary).to_have_attribute("href", f"/api/export/summary.csv?date={wednesday}&period=week&excel=1")
    async with page.expect_download() as info:
        await summary.click()
    download = await info.value
    assert download.suggested_filename == f"summary-week-{monday}.csv"
    table = list(csv.reader(io.StringIO(Path(await download.path()).read_text("utf-8-sig")), delimiter=";"))
    assert table[-1][:5] == ["total", "5", "4", "1", "0,4"]
    await expect(page.locator("#export-managers")).to_have_attribute(
        "href", f"/api/export/managers.csv?date={wednesday}&period=week&excel=1"
    )

    await page.locator("#lang").click()
    await expect(page.locator("#perf-h")).to_have_text("The week per manager")
    await expect(sl.locator(".kpi-k")).to_contain_text("service level in ")
    await expect(days.nth(7)).to_contain_text("Total")
    await expect(page.locator("#conversion-note")).to_contain_text("won / (won + lost)")
    await expect(page.locator("#period option:checked")).to_have_text("Week")
    await expect(summary).to_have_attribute("href", f"/api/export/summary.csv?date={wednesday}&period=week")

    await page.locator("#period").select_option("month")
    await expect(page.locator("#perf-h")).to_have_text("The month per manager")
    first = wednesday.replace(day=1)
    month_days = ((first + timedelta(days=32)).replace(day=1) - first).days
    await expect(days).to_have_count(month_days + 1)
    await expect(page.locator("#leaders thead")).to_contain_text("The month before")
