"""The pages as a Russian office sees them, in headless Chromium: the day's total in the
right Russian plural form, chart axes with grouped numbers and Russian dates that fit the
chart, the manager panel with an offer and the website widget on a 390 px phone without
anything off the screen, the widget worked from the keyboard with its error tied to the
field, and no console errors or failed requests on any page in either language."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import test_browser
from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import Running
from test_browser import lead, only, playwright_api, sign_in
from test_reports_browser import dashboard_on_the_scripted_day
from test_reports_day import store_contact

from acd.core.model import Channel, ContactStatus, Outcome

pytestmark = test_browser.pytestmark
chromium, site, page, shots = test_browser.chromium, test_browser.site, test_browser.page, test_browser.shots
expect = playwright_api.expect
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def phone_page(chromium: Any) -> AsyncIterator[Any]:
    """A page on a phone-sized screen; its uncaught script errors fail the test."""
    context = await chromium.new_context(viewport=PHONE, locale="ru-RU", has_touch=True)
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        await context.close()
    assert not errors, errors


async def fits_the_screen(page: Any, *locators: Any) -> None:
    """Nothing makes the page scroll sideways, and each of `locators` is wholly on the screen."""
    width = page.viewport_size["width"]
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    for loc in locators:
        box = await loc.bounding_box()
        assert box is not None, loc
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (loc, box)


async def test_the_day_s_total_takes_the_russian_plural_form(site: Running, page: Any) -> None:
    await only(site)  # nobody takes them: they wait, and count for the day
    total = page.locator('#kpis [data-kpi="total"]')
    await lead(site, "Первый Клиент")
    await site.settle()
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    await expect(total.locator(".kpi-v")).to_have_text("1")
    await expect(total.locator(".kpi-k")).to_have_text("обращение за день")
    await page.locator("#lang").click()
    await expect(total.locator(".kpi-k")).to_have_text("contact today")
    await page.locator("#lang").click()

    for n, form in [(2, "обращения за день"), (5, "обращений за день")]:
        while len(site.server.dispatcher.board.contacts) < n:
            await lead(site, f"Клиент {len(site.server.dispatcher.board.contacts) + 1}")
        await site.settle()
        await page.reload()
        await expect(total.locator(".kpi-v")).to_have_text(str(n))
        await expect(total.locator(".kpi-k")).to_have_text(form)


async def test_chart_axes_group_thousands_show_russian_dates_and_fit_the_chart(site: Running, page: Any) -> None:
    await dashboard_on_the_scripted_day(site, page)
    week = page.locator('#leaders figure[data-chart="chart.leaders_week"] svg')
    await expect(week.locator("rect")).to_have_count(2)
    # Boris's 300 000 for the week: the top of the axis, and his bar's tooltip
    await expect(week.locator("text.axis").filter(has_text=re.compile(r"^300\sтыс\.$"))).to_have_count(1)
    await expect(week.locator("rect title").first).to_have_text(re.compile(r"300\s000$"))
    days = page.locator('#leaders figure[data-chart="chart.leaders_days"] svg text.axis')
    labels = await days.all_text_contents()
    assert labels, "the chart of days has its labels"
    assert not [x for x in labels if re.fullmatch(r"\d\d-\d\d", x)], labels  # not the ISO "12-03"
    assert [x for x in labels if re.fullmatch(r"\d\d\.\d\d", x)], labels  # "03.12"
    # no axis label starts left of its chart (a long number used to be cut off)
    for chart in await page.locator("#leaders svg.chart, #charts svg.chart").all():
        lefts = await chart.evaluate("s => [...s.querySelectorAll('text.axis')].map(t => t.getBBox().x)")
        assert min(lefts) >= 0, lefts

    await page.locator("#lang").click()
    await expect(week.locator("text.axis").filter(has_text=re.compile(r"^300K$"))).to_have_count(1)
    await expect(week.locator("rect title").first).to_have_text(re.compile(r"300,000$"))


async def test_the_panel_with_an_offer_fits_a_phone(site: Running, chromium: Any, shots: Path) -> None:
    await only(site, "anna")
    long_name = "Константин Константинович Преображенский-Верхнеднепровский"
    await lead(site, long_name, note="Интересует корпоративная лицензия на 250 рабочих мест с поддержкой на три года")
    async with phone_page(chromium) as p:
        await sign_in(p, site, "anna", "anna-password", "/panel")
        offer = p.locator("#offer")
        await expect(offer.locator(".client-name")).to_have_text(long_name)
        await expect(p.locator("#countdown")).to_contain_text("мин")
        await p.screenshot(path=str(shots / "panel-offer-phone.png"), full_page=True)
        await fits_the_screen(
            p,
            offer,
            p.locator(".countdown"),
            p.get_by_role("button", name="Принять"),
            p.get_by_role("button", name="Выйти"),
            p.locator("#lang"),
        )


@asynccontextmanager
async def shop(site: Running) -> AsyncIterator[str]:
    """A company's site on another (allowed) origin with the widget on it; its address."""
    html = (
        "<!doctype html><html lang=ru><head><meta name=viewport content='width=device-width,initial-scale=1'>"
        "</head><body><h1>Ромашка Софт</h1><p>Оставьте заявку:</p><div data-acd-form></div>"
        f'<script src="{site.url("/widget.js")}" data-lang="ru"></script></body></html>'
    )

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", icon)
    host = TestServer(app, host="127.0.0.1", port=0)
    await host.start_server()
    origin = f"http://127.0.0.1:{host.port}"
    deployment = site.server.services.deployment
    site.server.services.deployment = replace(deployment, web=replace(deployment.web, allowed_origins=(origin,)))
    try:
        yield origin + "/"
    finally:
        site.server.services.deployment = deployment
        await host.close()


async def test_the_widget_on_a_phone_fits_and_works_from_the_keyboard(
    site: Running, chromium: Any, shots: Path
) -> None:
    await only(site)
    async with shop(site) as url, phone_page(chromium) as p:
        await p.goto(url)
        fab = p.get_by_role("button", name="Перезвоните мне")
        await expect(fab).to_be_visible()
        await fab.focus()
        await p.keyboard.press("Enter")
        dialog = p.get_by_role("dialog")
        name = dialog.get_by_label("Ваше имя")
        await expect(name).to_be_focused()
        await p.screenshot(path=str(shots / "widget-phone.png"))
        await fits_the_screen(p, dialog, name, dialog.get_by_role("button", name="Отправить"))

        # the order of the fields: name, then phone
        await p.keyboard.type("Мария Сидорова")
        await p.keyboard.press("Tab")
        phone = dialog.get_by_label("Телефон")
        await expect(phone).to_be_focused()

        # Enter without a phone: the error is announced, tied to the field, and focus stays there
        await p.keyboard.press("Enter")
        alert = dialog.get_by_role("alert")
        await expect(alert).to_have_text("Укажите телефон.")
        await expect(phone).to_be_focused()
        await expect(phone).to_have_attribute("aria-invalid", "true")
        assert await phone.evaluate(
            "(f, a) => f.getAttribute('aria-describedby') === a.id", await alert.element_handle()
        )

        await p.keyboard.type("+7 916 555-44-33")
        await p.keyboard.press("Enter")
        await expect(dialog.get_by_role("status")).to_contain_text("Спасибо!")
        await expect(dialog.get_by_role("status")).to_be_focused()
    rows = [c for c in await site.server.store.list_contacts() if c.phone == "+7 916 555-44-33"]
    assert len(rows) == 1 and rows[0].channel.value == "callback"


async def test_no_console_errors_or_failed_requests_on_any_page(site: Running, chromium: Any) -> None:
    await only(site, "anna")
    await lead(site, "Клиент С Сайта", note="перезвонить после обеда")
    accounts = site.server.app[test_browser.ACCOUNTS]
    await accounts.create("boss", "boss-password", "admin", None, "Администратор")
    problems: list[str] = []
    for username, password, lands_on, pages in [
        ("anna", "anna-password", "/panel", ["/panel"]),
        ("olga", "olga-password", "/dashboard", ["/dashboard"]),
        ("boss", "boss-password", "/dashboard", ["/admin"]),
    ]:
        context = await chromium.new_context(viewport={"width": 1366, "height": 768}, locale="ru-RU")
        p = await context.new_page()
        p.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        p.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        # a request cut short by leaving the page (ERR_ABORTED) is the browser's doing, not a fault
        p.on(
            "requestfailed",
            lambda r: (
                problems.append(f"failed: {r.url} {r.failure}") if "ERR_ABORTED" not in (r.failure or "") else None
            ),
        )
        p.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        try:
            await sign_in(p, site, username, password, lands_on)
            for path in pages:
                if path != lands_on:
                    await p.goto(site.url(path))
                await p.wait_for_load_state("networkidle")
                await p.locator("#lang").click()  # English, then back to Russian
                await p.wait_for_timeout(300)
                await p.locator("#lang").click()
                await p.wait_for_timeout(300)
        finally:
            await context.close()
    assert not problems, problems


async def test_the_admin_s_active_checkbox_sits_beside_its_label(site: Running, page: Any) -> None:
    accounts = site.server.app[test_browser.ACCOUNTS]
    await accounts.create("boss", "boss-password", "admin", None, "Администратор")
    await page.set_viewport_size({"width": 1366, "height": 768})
    await sign_in(page, site, "boss", "boss-password", "/dashboard")
    await page.goto(site.url("/admin"))
    box = page.get_by_label("Активен")
    await expect(box).to_be_checked()
    check = await box.bounding_box()
    text = await page.locator('label.check span[data-i18n="admin.active"]').bounding_box()
    assert check is not None and text is not None
    # the box is drawn in the middle of its element: a wide element puts it far from the text
    assert check["width"] <= 24, check
    assert 0 <= text["x"] - (check["x"] + check["width"]) <= 16, (check, text)


async def test_the_decision_log_dates_the_entries_of_earlier_days(site: Running, page: Any) -> None:
    zone = ZoneInfo(site.server.deployment.tz)
    now = datetime.fromtimestamp(site.server.services.clock(), zone)
    before = datetime.combine(now.date() - timedelta(days=3), time(17, 58), zone)
    await store_contact(
        site.server.store, 1, "old1", Channel.WEB, before.timestamp(), ContactStatus.FINISHED,
        ("anna", before.timestamp() + 2), ("accept", before.timestamp() + 30), Outcome.DONE,
    )  # fmt: skip
    await only(site, "anna")
    await lead(site, "Сегодняшний Клиент")
    await site.settle()
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    old = page.locator('#decisions details[data-decision="d-old1"] summary .muted')
    await expect(old).to_have_text(f"{before:%d.%m}, 17:58")
    latest = page.locator("#decisions details summary .muted").first
    await expect(latest).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))  # today's: the time alone
