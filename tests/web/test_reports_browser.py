"""The supervisor's report in headless Chromium: for a scripted day 30 days ago (the day of
tests/test_reports_day.py), the sales leaders of the day and the week with the trend against
the week before, as a table and as charts, each manager's speed of response and the day's
longest wait, in Russian and in English."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import test_browser
from api_fixtures import Running
from test_browser import playwright_api, sign_in
from test_reports_day import closed_deals, scripted_day

# the browser, a fresh server and a page, as tests/web/test_browser.py makes them
pytestmark = test_browser.pytestmark
chromium, site, page = test_browser.chromium, test_browser.site, test_browser.page
expect = playwright_api.expect


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " ")).strip()


async def dashboard_on_the_scripted_day(site: Running, page: Any) -> date:
    """The scripted day (30 days ago) and its deals stored, and the supervisor's dashboard
    showing it; the day."""
    zone = ZoneInfo(site.server.deployment.tz)
    day = datetime.fromtimestamp(site.server.services.clock(), zone).date() - timedelta(days=30)
    await scripted_day(site.server.store, day, zone)
    await closed_deals(site, day, zone)
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    await page.locator("#date").fill(day.isoformat())
    return day


async def test_the_sales_leaders_their_trend_and_each_manager_s_speed_of_response(site: Running, page: Any) -> None:
    day = await dashboard_on_the_scripted_day(site, page)
    leaders = page.locator("#leaders")
    await expect(page.locator("#leaders-h")).to_have_text("Лидеры продаж")
    rows = leaders.locator("tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("Борис Иванов")
    texts = [_plain(x) for x in await rows.all_inner_texts()]
    assert "300 000 · сделок: 1 (проиграно: 1)" in texts[0] and "▲ +200%" in texts[0], texts
    assert texts[1].startswith("2 Анна Соколова 200 000 · сделок: 2"), texts
    assert "▲ новый" in texts[1], texts
    assert "▼ −100%" in texts[2] and "80 000 · сделок: 1" in texts[2], texts
    # charts, not only the table: the week's amounts per manager and the amounts per day
    await expect(leaders.locator('figure[data-chart="chart.leaders_week"] svg rect')).to_have_count(2)
    await expect(leaders.locator('figure[data-chart="chart.leaders_days"] svg')).to_have_count(1)
    await expect(leaders.locator('figure[data-chart="chart.leaders_days"] .legend span')).to_have_count(2)

    kpi = page.locator('#kpis [data-kpi="longest_day"]')
    await expect(kpi.locator(".kpi-v")).to_have_text("1 ч 30 мин")
    await expect(kpi.locator(".kpi-k")).to_contain_text(f"дольше всех ждал за {day.day}")
    perf = page.locator("#perf")
    await expect(perf.locator("thead")).to_contain_text("Скорость ответа (сред. / макс.)")
    await expect(perf.locator('td[data-col="response"]').first).to_have_text("8:01 мин / 19:55 мин")  # anna

    await page.locator("#lang").click()
    await expect(page.locator("#leaders-h")).to_have_text("Sales leaders")
    await expect(rows.nth(1)).to_contain_text("deals: 2")
    await expect(rows.nth(1).locator('td[data-col="trend"]')).to_have_text("▲ new")
    await expect(leaders.locator("thead")).to_contain_text("The 7 days before")
    await expect(kpi.locator(".kpi-k")).to_contain_text("longest wait on")
    await expect(perf.locator("thead")).to_contain_text("Speed of response (avg / max)")
