"""The pages in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): a
manager signs in and works an offer, a missed offer pauses and rejoin works, a supervisor
reassigns, the website widget on another origin books a callback.

One browser for the module; a fresh server (SQLite) per test. Screenshots go to a temporary
folder, or to $ACD_SCREENSHOTS (e.g. docs/screenshots) when set.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import Running, example_deployment, start, stop
from argon2 import PasswordHasher
from storage_fixtures import Backend

from acd.core.events import PolicyReloaded, PresenceSet, TimerFired
from acd.core.model import Channel, ContactStatus, Presence
from acd.storage.store import default_sqlite_url
from acd.storage.telephony import CallbackRow
from acd.telephony.api import TELEPHONY
from acd.web.auth import ACCOUNTS

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# the policy's escalation pools as the Russian pages name them
POOLS_RU = {"preferred": "свой менеджер", "team": "команда", "skill": "по навыкам", "any": "все"}
EVIL_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>Ivan'


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        await browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("ACD_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(loop_scope="module")
async def site(tmp_path: Path) -> AsyncIterator[Running]:
    r = await start(Backend("sqlite", default_sqlite_url(tmp_path / "data")), example_deployment())
    accounts = r.server.app[ACCOUNTS]
    accounts.hasher = FAST
    await accounts.create("anna", "anna-password", "manager", "anna", "Анна Соколова")
    await accounts.create("olga", "olga-password", "supervisor", None, "Ольга Руководитель")
    try:
        yield r
    finally:
        await stop(r)


@pytest_asyncio.fixture(loop_scope="module")
async def page(chromium: Any) -> AsyncIterator[Any]:
    context = await chromium.new_context(viewport={"width": 1360, "height": 900}, locale="ru-RU")
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    yield p
    await context.close()
    assert not errors, errors


class StubTelephony:
    """Stands in for the Asterisk side: records click-to-call and callback requests."""

    def __init__(self, clock: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        self.requests: list[dict[str, Any]] = []
        self.keys: list[str | None] = []  # the Idempotency-Key each request came with
        self.callbacks = self
        self.clock = clock

    async def click_to_call(self, contact: Any, manager: Any) -> Any:
        self.calls.append((contact.id, manager.id))
        return type("Result", (), {"answered": True, "reason": "", "channel": f"{manager.device}-0001"})()

    async def request(self, **kw: Any) -> CallbackRow:
        self.requests.append(kw)
        now = self.clock()
        when = kw.get("not_before") or now
        return CallbackRow(
            id="cb1", contact_id="c1", phone=kw["phone"], requested_at=now, not_before=when, next_at=when
        )

    async def submit(self, idempotency_key: str | None, **kw: Any) -> tuple[CallbackRow, bool]:
        self.keys.append(idempotency_key)
        return await self.request(**kw), True


def telephony(site: Running, on: bool) -> StubTelephony | None:
    """Connect (or disconnect) the stand-in telephony on the running server."""
    app = site.server.app
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # changing a started app's state
        if not on:
            if TELEPHONY in app:
                del app[TELEPHONY]
            return None
        stub = StubTelephony(site.server.services.clock)
        app[TELEPHONY] = stub  # type: ignore[assignment]
        return stub


async def only(site: Running, *available: str) -> None:
    for mid in site.server.dispatcher.board.managers:
        if mid not in available:
            await site.server.dispatcher.submit(PresenceSet(mid, Presence.PAUSED, "lunch", "test"))


async def sign_in(page: Any, site: Running, username: str, password: str, lands_on: str) -> None:
    await page.goto(site.url("/login"))
    await page.get_by_label("Имя пользователя").fill(username)
    await page.get_by_label("Пароль").fill(password)
    await page.get_by_role("button", name="Войти").click()
    await page.wait_for_url(f"**{lands_on}")


async def lead(site: Running, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "phone": "+7 495 123-45-67", "criteria": {"temperature": "hot", "purpose": "purchase"}}
    status, contact = await site.call("POST", "/api/leads", json={**body, **extra})
    assert status == 201
    return contact


async def test_a_manager_goes_available_gets_a_lead_with_its_card_accepts_and_finishes_it(
    site: Running, page: Any, shots: Path
) -> None:
    await only(site)
    await site.server.dispatcher.submit(PresenceSet("anna", Presence.OFFLINE, None, "test"))
    earlier = await lead(site, EVIL_NAME, note="звонил в прошлом месяце")
    await site.server.dispatcher.submit(TimerFired(("never", "x")))  # settle
    await sign_in(page, site, "anna", "anna-password", "/panel")
    state = page.locator("#state")
    await playwright_api.expect(state).to_have_text("Не в сети")
    await page.get_by_role("button", name="На линии").click()
    await playwright_api.expect(state).to_have_text("Предложено обращение")  # the waiting lead comes at once

    offer = page.locator("#offer")
    await playwright_api.expect(offer).to_be_visible()
    card = page.locator("#client-card")
    await playwright_api.expect(card.locator(".client-name")).to_have_text(EVIL_NAME)
    await playwright_api.expect(card).to_contain_text("+7 495 123-45-67")
    await playwright_api.expect(card).to_contain_text("Горячий")  # the form's answer, labelled
    await playwright_api.expect(card).to_contain_text("звонил в прошлом месяце")
    assert await page.evaluate("window.__pwned") is None, "a customer's text is never run as HTML"
    assert await card.locator("img, script").count() == 0
    await playwright_api.expect(page.locator("#countdown")).to_contain_text("мин")
    await page.screenshot(path=str(shots / "panel-offer.png"))

    await page.get_by_role("button", name="Принять").click()
    await playwright_api.expect(offer).to_be_hidden()
    row = page.locator(f'#mine tr[data-contact="{earlier["id"]}"]')
    await playwright_api.expect(row).to_be_visible()
    assert site.server.dispatcher.board.contacts[earlier["id"]].assigned_to == "anna"

    # a second lead from the same phone: the card shows the earlier contact
    second = await lead(site, "Иван Петров")
    await playwright_api.expect(offer).to_be_visible()
    await playwright_api.expect(card).to_contain_text("Прошлые обращения")
    await playwright_api.expect(card.locator(".history li")).to_have_count(1)
    await page.keyboard.press("a")
    await playwright_api.expect(page.locator(f'#mine tr[data-contact="{second["id"]}"]')).to_be_visible()
    await page.screenshot(path=str(shots / "panel.png"))

    await row.get_by_role("button", name="Сделка").click()
    await playwright_api.expect(row).to_be_hidden()
    done = await site.server.store.get_contact(earlier["id"])
    assert done is not None and done.status is ContactStatus.FINISHED and done.outcome and done.outcome.value == "won"

    await page.locator("#lang").click()
    await playwright_api.expect(page.get_by_role("heading", name="My contacts")).to_be_visible()
    await page.locator("#lang").click()


async def test_a_missed_offer_shows_the_pause_banner_and_one_click_rejoins(site: Running, page: Any) -> None:
    board = site.server.dispatcher.board
    # long enough for a loaded CI machine to render the offer before it expires
    web_rules = replace(board.policy.rules(Channel.WEB), offer_timeout=4.0)
    await site.server.dispatcher.submit(
        PolicyReloaded(replace(board.policy, channels={**board.policy.channels, Channel.WEB: web_rules}))
    )
    await only(site, "anna")
    await sign_in(page, site, "anna", "anna-password", "/panel")
    await playwright_api.expect(page.locator("#conn")).to_have_class("conn ok")
    await lead(site, "Мария")
    await playwright_api.expect(page.locator("#offer")).to_be_visible()  # and nobody answers it

    banner = page.locator("#pause-banner")
    await playwright_api.expect(banner).to_be_visible(timeout=15_000)
    await playwright_api.expect(banner).to_contain_text("пропустили обращение")
    await playwright_api.expect(page.locator("#offer")).to_be_hidden()
    assert site.server.dispatcher.board.managers["anna"].presence is Presence.PAUSED

    await page.get_by_role("button", name="Вернуться в очередь").click()
    await playwright_api.expect(banner).to_be_hidden()
    assert site.server.dispatcher.board.managers["anna"].presence is not Presence.PAUSED
    await playwright_api.expect(page.locator("#state")).not_to_have_text("Пауза")


async def test_the_supervisor_sees_the_queue_and_the_decision_and_reassigns(
    site: Running, page: Any, shots: Path
) -> None:
    await only(site, "anna")
    taken = await lead(site, "Пётр Сидоров", email="petr@example.ru")
    await site.settle()
    anna = await site.manager_token("anna")
    await site.call("POST", f"/api/contacts/{taken['id']}/accept", anna)
    await site.call("POST", f"/api/contacts/{taken['id']}/finish", anna, json={"outcome": "won"})
    await only(site)
    waiting = await lead(site, "Ожидающий Клиент", channel="callback", note="Обратный звонок: 15:00")
    await lead(site, "Ещё Один", criteria={"temperature": "cold"})

    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    row = page.locator(f'#queue tr[data-contact="{waiting["id"]}"]')
    await playwright_api.expect(row).to_contain_text("Ожидающий Клиент")
    await playwright_api.expect(page.locator("#managers")).to_contain_text("Анна Соколова")
    await playwright_api.expect(page.locator("#decisions details").first).to_be_visible()
    await playwright_api.expect(page.locator("#charts svg")).to_have_count(7)
    week = page.locator("#charts figure").filter(has_text="Конверсия менеджеров за 7 дней")
    await playwright_api.expect(week.locator("circle")).to_have_count(1)  # Anna won today's only closed deal
    await playwright_api.expect(week.locator(".legend")).to_contain_text("Анна Соколова")
    sl_week = page.locator("#charts figure").filter(has_text="Уровень сервиса за 7 дней")
    await playwright_api.expect(sl_week.locator("circle title")).to_contain_text(["100%"])
    await page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    await row.get_by_role("button", name="Почему?").click()
    await row.get_by_role("button", name="Передать").click()
    dialog = page.locator("#reassign-dialog")
    await playwright_api.expect(dialog).to_be_visible()
    await page.locator("#reassign-to").select_option("boris")
    await page.locator("#reassign-ok").click()
    await playwright_api.expect(dialog).to_be_hidden()
    await playwright_api.expect(row).to_contain_text("Борис")  # pinned to (or offered to) Boris
    c = site.server.dispatcher.board.contacts[waiting["id"]]
    assert c.override and "boris" in (c.pinned_to, c.offered_to)
    await playwright_api.expect(page.locator("#decisions")).to_contain_text("ручное решение")

    manager_row = page.locator('#managers tr[data-manager="vera"]')
    await manager_row.get_by_role("button", name="На линию").click()
    await playwright_api.expect(manager_row.locator(".badge")).not_to_have_text("Пауза")

    async with site.session.get(
        site.url("/api/export/contacts.csv"), headers={"Authorization": f"Bearer {site.supervisor}"}
    ) as resp:
        text = await resp.text()
    assert resp.status == 200 and "Пётр Сидоров" in text and "won" in text


async def test_the_widget_on_another_origin_books_a_callback_once(site: Running, page: Any, shots: Path) -> None:
    html = (
        "<!doctype html><html lang=ru><body><h1>Ромашка Софт</h1><div data-acd-form></div>"
        f'<script src="{site.url("/widget.js")}" data-lang="ru"></script></body></html>'
    )

    async def shop(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", shop)
    host = TestServer(app, host="127.0.0.1", port=0)
    await host.start_server()
    origin = f"http://127.0.0.1:{host.port}"
    deployment = site.server.services.deployment
    site.server.services.deployment = replace(deployment, web=replace(deployment.web, allowed_origins=(origin,)))
    try:
        await only(site)
        await page.goto(origin + "/")
        await page.get_by_role("button", name="Перезвоните мне").click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_label("Ваше имя").fill("Сайт Посетитель")
        await dialog.get_by_label("Телефон").fill("+7 900 111-22-33")
        await dialog.get_by_label("Удобное время", exact=True).fill("15:30")
        await dialog.get_by_label("Готовность к покупке").select_option("hot")
        # a double submit (an impatient double click): one lead (the widget sends once, and its
        # Idempotency-Key would make a repeat the same lead)
        await page.evaluate(
            "() => { const f = document.querySelector('[data-acd-widget]').shadowRoot.querySelector('form');"
            " f.requestSubmit(); f.requestSubmit(); }"
        )
        await playwright_api.expect(dialog).to_contain_text("Спасибо! Мы перезвоним вам в 15:30.")
        await page.screenshot(path=str(shots / "widget.png"))

        rows = [c for c in await site.server.store.list_contacts() if c.phone == "+7 900 111-22-33"]
        assert len(rows) == 1, "one request, however often it was sent"
        assert rows[0].channel.value == "callback" and "15:30" in rows[0].payload.get("note", "")
        assert rows[0].criteria["temperature"] == "hot"

        # the inline lead form on the same page
        form = page.locator("[data-acd-form]")
        await form.get_by_label("E-mail").fill("visitor@example.ru")
        await form.get_by_role("button", name="Отправить").click()
        await playwright_api.expect(form).to_contain_text("Заявка принята")

        # the same page on an origin that is not allowed gets no widget
        site.server.services.deployment = deployment
        await page.goto(origin + "/")
        await page.wait_for_load_state("networkidle")
        assert await page.get_by_role("button", name="Перезвоните мне").count() == 0
    finally:
        site.server.services.deployment = deployment
        await host.close()


async def test_the_admin_sees_managers_and_the_configuration_and_creates_an_account(
    site: Running, page: Any, shots: Path
) -> None:
    await site.server.app[ACCOUNTS].create("root", "root-password", "admin")
    await sign_in(page, site, "root", "root-password", "/dashboard")
    await page.get_by_role("link", name="Администрирование").click()
    await page.wait_for_url("**/admin")
    await playwright_api.expect(page.locator("#managers")).to_contain_text("Вера Кузнецова")
    await playwright_api.expect(page.locator("#config")).to_contain_text("Готовность к покупке")
    form = page.locator("#account-form")
    await form.get_by_label("Имя пользователя").fill("vera")
    await form.get_by_label("Пароль", exact=True).fill("vera-password")
    await form.locator("select[name=role]").select_option("manager")
    await form.locator("select[name=manager_id]").select_option("vera")
    await form.get_by_role("button", name="Создать").click()
    await playwright_api.expect(page.locator("#accounts")).to_contain_text("vera")
    account = await site.server.app[ACCOUNTS].check_password("vera", "vera-password")
    assert account is not None and account.manager_id == "vera"
    await page.screenshot(path=str(shots / "admin.png"), full_page=True)


async def test_click_to_call_from_my_contacts_and_a_clear_message_when_telephony_is_off(
    site: Running, page: Any
) -> None:
    stub = telephony(site, True)
    assert stub is not None
    await only(site, "anna")
    c = await lead(site, "Звонок Клиенту")
    await site.settle()
    await site.call("POST", f"/api/contacts/{c['id']}/accept", await site.manager_token("anna"))
    await sign_in(page, site, "anna", "anna-password", "/panel")
    row = page.locator(f'#mine tr[data-contact="{c["id"]}"]')
    await row.get_by_role("button", name="Позвонить: Звонок Клиенту").click()
    await playwright_api.expect(page.locator("#toasts")).to_contain_text("Соединяем с клиентом")
    assert stub.calls == [(c["id"], "anna")]

    telephony(site, False)  # the PBX side was switched off since the page loaded: 503 telephony_off
    await row.get_by_role("button", name="Позвонить: Звонок Клиенту").click()
    await playwright_api.expect(page.locator("#toasts")).to_contain_text("Телефония не подключена")
    await playwright_api.expect(row.get_by_role("button", name="Позвонить: Звонок Клиенту")).to_have_count(0)
    await playwright_api.expect(row.locator("a.call")).to_have_text("+7 495 123-45-67")  # still a tel: link


async def test_the_widget_books_a_callback_through_the_telephony_and_says_when_and_who(
    site: Running, page: Any
) -> None:
    stub = telephony(site, True)
    assert stub is not None
    status, customer = await site.call(
        "POST", "/api/crm/customers", site.supervisor, json={"name": "ООО Лютик", "phones": ["+7 900 222-33-44"]}
    )
    assert status == 201
    status, _ = await site.call(
        "POST", f"/api/crm/customers/{customer['id']}/pin", site.supervisor, json={"manager_id": "anna"}
    )
    assert status == 200
    html = (
        "<!doctype html><html lang=ru><body><h1>Ромашка Софт</h1>"
        f'<script src="{site.url("/widget.js")}" data-lang="ru"></script></body></html>'
    )

    async def shop(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", shop)
    host = TestServer(app, host="127.0.0.1", port=0)
    await host.start_server()
    origin = f"http://127.0.0.1:{host.port}"
    deployment = site.server.services.deployment
    # customers are told by e-mail how a callback goes: the form asks for an address
    notices = replace(deployment.notifications, enabled=True)
    site.server.services.deployment = replace(
        deployment,
        web=replace(deployment.web, allowed_origins=(origin,), name_the_manager=True),
        notifications=notices,
    )
    before = len(await site.server.store.list_contacts())
    tz = ZoneInfo(deployment.tz)
    # office hours, and hours away from now on the site's clock (a time a minute ahead would
    # already be "as soon as possible" by the time the answer comes)
    hour = 11 if 13 <= datetime.now(tz).hour <= 16 else 15
    try:
        await page.goto(origin + "/")
        await page.get_by_role("button", name="Перезвоните мне").click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_label("Ваше имя").fill("Лютик")
        await dialog.get_by_label("Телефон").fill("+7 900 222-33-44")
        await dialog.get_by_label("Удобное время", exact=True).fill(f"{hour:02d}:30")
        await dialog.get_by_role("button", name="Отправить").click()
        await playwright_api.expect(dialog).to_contain_text("Спасибо! Мы перезвоним вам")
        await playwright_api.expect(dialog).to_contain_text(f"{hour:02d}:30.")
        await playwright_api.expect(dialog).to_contain_text("Вам позвонит Анна Соколова.")  # the pinned manager
        [asked] = stub.requests
        assert asked["phone"] == "+7 900 222-33-44" and asked["name"] == "Лютик" and asked["email"] == ""
        when = datetime.fromtimestamp(asked["not_before"], tz)
        assert (when.hour, when.minute) == (hour, 30), "the time the visitor chose, in the site's time zone"
        assert 0 < asked["not_before"] - time.time() <= 86400
        assert len(await site.server.store.list_contacts()) == before, "a callback request, not a lead"

        # a stranger: no name is promised
        await page.goto(origin + "/")
        await page.get_by_role("button", name="Перезвоните мне").click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_label("Телефон").fill("+7 900 999-88-77")
        await dialog.get_by_label("E-mail для уведомлений о звонке").fill("stranger@example.ru")
        await dialog.get_by_role("button", name="Отправить").click()
        await playwright_api.expect(dialog).to_contain_text("Спасибо! Мы перезвоним вам в ближайшее время.")
        await playwright_api.expect(dialog).not_to_contain_text("позвонит")
        assert len(stub.requests) == 2 and stub.requests[1].get("not_before") is None
        assert stub.requests[1]["email"] == "stranger@example.ru"
        assert stub.keys[0] and stub.keys[1] and stub.keys[0] != stub.keys[1], "one Idempotency-Key per form"
    finally:
        site.server.services.deployment = deployment
        await host.close()


async def test_the_supervisor_pins_the_client_of_a_waiting_contact_to_a_manager(site: Running, page: Any) -> None:
    await only(site)
    waiting = await lead(site, "Клиент Для Закрепления", phone="+7 900 555-66-77")
    await site.settle()
    customer_id = site.server.dispatcher.board.contacts[waiting["id"]].customer_id
    assert customer_id, "the CRM knows (or has just made) the customer behind the phone"
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    row = page.locator(f'#queue tr[data-contact="{waiting["id"]}"]')
    await row.get_by_role("button", name="Закрепить клиента").click()
    dialog = page.locator("#pin-dialog")
    await playwright_api.expect(dialog).to_be_visible()
    await page.locator("#pin-to").select_option("vera")
    await page.locator("#pin-ok").click()
    await playwright_api.expect(dialog).to_be_hidden()
    await playwright_api.expect(page.locator("#toasts")).to_contain_text("Клиент закреплён")
    status, card = await site.call("GET", f"/api/crm/customers/{customer_id}", site.supervisor)
    assert status == 200 and card["customer"]["pinned_to"] == "vera"


async def test_dashboard_updates_keep_the_keyboard_focus_where_it_was(site: Running, page: Any) -> None:
    await only(site)
    first = await lead(site, "Первый В Очереди")
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    row = page.locator(f'#queue tr[data-contact="{first["id"]}"]')
    button = row.get_by_role("button", name="Передать")
    await button.focus()
    await playwright_api.expect(button).to_be_focused()
    second = await lead(site, "Второй В Очереди", criteria={"temperature": "cold"})  # the queue is rebuilt
    await playwright_api.expect(page.locator(f'#queue tr[data-contact="{second["id"]}"]')).to_be_visible()
    await playwright_api.expect(button).to_be_focused()  # the same row's button, not <body>

    # a manager's pause button by keyboard: the rebuilt row's button keeps the focus
    vera = page.locator('#managers tr[data-manager="vera"]').get_by_role("button")
    await vera.focus()
    await page.keyboard.press("Enter")
    await playwright_api.expect(vera).to_have_text("Пауза")
    await playwright_api.expect(vera).to_be_focused()
    await page.keyboard.press("Enter")  # and the keyboard can undo it at once
    await playwright_api.expect(vera).to_have_text("На линию")
    await playwright_api.expect(vera).to_be_focused()


async def test_a_manager_transfers_a_contact_to_a_colleague_from_the_panel(site: Running, page: Any) -> None:
    await only(site, "anna")
    taken = await lead(site, "Клиент Для Передачи")
    await site.settle()
    anna = await site.manager_token("anna")
    status, _ = await site.call("POST", f"/api/contacts/{taken['id']}/accept", anna)
    assert status == 200
    await sign_in(page, site, "anna", "anna-password", "/panel")
    row = page.locator(f'#mine tr[data-contact="{taken["id"]}"]')
    await row.get_by_role("button", name="Передать").click()
    dialog = page.locator("#transfer-dialog")
    await playwright_api.expect(dialog).to_be_visible()
    await playwright_api.expect(page.locator("#transfer-to option")).to_contain_text(["Борис Иванов"])
    await page.locator("#transfer-to").select_option("manager:boris")
    await page.locator("#transfer-ok").click()
    await playwright_api.expect(dialog).to_be_hidden()
    await playwright_api.expect(row).to_have_count(0)  # no longer mine
    c = site.server.dispatcher.board.contacts[taken["id"]]
    assert c.assigned_to is None and "boris" in (c.pinned_to, c.offered_to)
    decisions = await site.server.store.list_decisions(contact_id=taken["id"])
    assert any(d.kind == "transfer" for d in decisions), [d.kind for d in decisions]


async def test_the_dashboard_shows_no_made_up_time_in_state_for_a_manager_it_has_no_time_for(
    site: Running, page: Any
) -> None:
    # a new hire added by the admin has not been on line yet: the server has no "since" for them
    status, _ = await site.call(
        "POST",
        "/api/managers",
        site.admin,
        json={"id": "zoya", "name": "Зоя Новая", "team": "sales", "skills": {"sales": 3}, "capacity": {"web": 3}},
    )
    assert status == 201
    assert site.server.dispatcher.board.managers["zoya"].presence_since == 0
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    zoya = page.locator('#managers tr[data-manager="zoya"] td').nth(1)
    await playwright_api.expect(zoya).to_have_text("Не в сети")  # not "Не в сети 499076 ч 03 мин"
    anna = page.locator('#managers tr[data-manager="anna"] td').nth(1)
    await playwright_api.expect(anna).to_contain_text(" с")  # a real time in state is still shown
    await page.locator("#lang").click()
    await playwright_api.expect(zoya).to_have_text("Offline")
    await page.locator("#lang").click()


async def test_the_decision_log_names_every_kind_and_counts_steps_as_the_summary_does(site: Running, page: Any) -> None:
    await only(site, "anna")
    taken = await lead(site, "Клиент Для Журнала")
    await site.settle()
    anna = await site.manager_token("anna")
    status, _ = await site.call("POST", f"/api/contacts/{taken['id']}/accept", anna)
    assert status == 200
    status, _ = await site.call("POST", f"/api/contacts/{taken['id']}/transfer", anna, json={"to_manager": "boris"})
    assert status == 200
    decisions = await site.server.store.list_decisions(contact_id=taken["id"])
    offer = next(d for d in decisions if d.kind == "offer")
    assert f"step {offer.step + 1} '{offer.pool}'" in offer.summary

    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    log = page.locator("#decisions")
    transfer = log.locator("details").filter(has_text="передача менеджером")
    await playwright_api.expect(transfer).to_have_count(1)
    await playwright_api.expect(log).not_to_contain_text("kind.")
    entry = log.locator(f'details[data-decision="{offer.id}"]')
    await playwright_api.expect(entry.locator("summary")).to_have_attribute("title", offer.summary)
    await entry.locator("summary").click()
    # the same step number as the summary (and the admin page's numbered list of steps)
    await playwright_api.expect(entry.locator(".why")).to_contain_text(f"шаг {offer.step + 1} ({POOLS_RU[offer.pool]})")
    await page.locator("#lang").click()
    await playwright_api.expect(log.locator("details").filter(has_text="transfer by a manager")).to_have_count(1)
    await playwright_api.expect(entry.locator(".why")).to_contain_text(f"step {offer.step + 1} ({offer.pool})")
    await playwright_api.expect(log).not_to_contain_text("kind.")
    await page.locator("#lang").click()


async def test_switching_the_language_redraws_the_client_cards_in_the_panel(site: Running, page: Any) -> None:
    await only(site, "anna")
    first = await lead(site, "Клиент Карточки", note="перезвонить вечером")
    await site.settle()
    status, _ = await site.call("POST", f"/api/contacts/{first['id']}/accept", await site.manager_token("anna"))
    assert status == 200
    await sign_in(page, site, "anna", "anna-password", "/panel")
    row = page.locator(f'#mine tr[data-contact="{first["id"]}"]')
    await row.get_by_role("button", name="Клиент Карточки", exact=True).click()
    selected = page.locator("#selected-card")
    await playwright_api.expect(selected).to_contain_text("Горячий")
    await lead(site, "Второй Клиент", phone="+7 900 123-00-00")  # and an offer rings meanwhile
    card = page.locator("#client-card")
    await playwright_api.expect(card).to_contain_text("Второй Клиент")
    await playwright_api.expect(card).to_contain_text("Горячий")  # the full card has come

    await page.locator("#lang").click()
    await playwright_api.expect(page.get_by_role("heading", name="Client card")).to_be_visible()
    for box in (selected, card):
        await playwright_api.expect(box).to_contain_text("Hot")
        await playwright_api.expect(box).to_contain_text("Earlier contacts")
        await playwright_api.expect(box).to_contain_text("Web lead")
        await playwright_api.expect(box).not_to_contain_text("Горячий")
        await playwright_api.expect(box).not_to_contain_text("Прошлые обращения")
    await playwright_api.expect(selected).to_contain_text("Note: перезвонить вечером")  # the customer's words stay

    await page.locator("#lang").click()
    await playwright_api.expect(card).to_contain_text("Прошлые обращения")
    await playwright_api.expect(selected).to_contain_text("Горячий")


# ---- fixes from the browser audit ---------------------------------------------------------


def _day(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date().isoformat()


async def _poke(site: Running) -> None:
    """Something changes on the board: the dashboards get a `changed` message (with the
    server's time) and refresh."""
    await site.server.dispatcher.submit(PresenceSet("vera", Presence.PAUSED, "lunch", "test"))
    await site.server.dispatcher.submit(PresenceSet("vera", Presence.AVAILABLE, None, "test"))


async def test_a_dashboard_left_open_overnight_moves_on_to_the_new_day_unless_a_day_was_picked(
    site: Running, page: Any
) -> None:
    tz = site.server.services.deployment.tz
    asked: list[str] = []
    page.on(
        "request",
        lambda r: asked.append(r.url.split("date=")[1][:10]) if "/api/reports/day?date=" in r.url else None,
    )
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    today = _day(time.time(), tz)
    await playwright_api.expect(page.locator("#date")).to_have_value(today)
    await playwright_api.expect(page.locator("#kpis")).to_contain_text("обращений за день")

    # the server's clock passes midnight (in the site's time zone) while the page stays open
    zone = ZoneInfo(tz)
    local = datetime.now(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone).timestamp() + 86400
    shift = midnight + 60 - time.time()
    services = site.server.services
    services.clock = lambda: time.time() + shift
    tomorrow = _day(time.time() + shift, tz)
    assert tomorrow != today
    await _poke(site)
    await playwright_api.expect(page.locator("#date")).to_have_value(tomorrow, timeout=10_000)
    for _ in range(50):
        if tomorrow in asked:
            break
        await page.wait_for_timeout(100)
    assert asked[-1] == tomorrow, asked  # the report now read is the new day's
    await playwright_api.expect(page.locator("#kpis")).to_contain_text("обращений за день")  # still "today"

    # a day the supervisor picked stays picked across midnight
    await page.locator("#date").fill(today)
    await playwright_api.expect(page.locator('#kpis [data-kpi="total"]')).not_to_contain_text("за день")
    assert asked[-1] == today
    shift += 86400
    await _poke(site)
    await page.wait_for_timeout(2500)
    await playwright_api.expect(page.locator("#date")).to_have_value(today)
    assert asked[-1] == today, asked


async def test_the_decision_log_speaks_the_page_language(site: Running, page: Any) -> None:
    await only(site, "anna")
    taken = await lead(site, "Клиент Для Объяснения")
    await site.settle()
    [offer] = [d for d in await site.server.store.list_decisions(contact_id=taken["id"]) if d.kind == "offer"]
    assert offer.filtered_counts and offer.candidates
    top = offer.candidates[0]
    score = f"{top.score + 0.0:.3f}"  # as the page writes it: no "-0.000"

    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    entry = page.locator(f'#decisions details[data-decision="{offer.id}"]')
    line = entry.locator("summary")
    await playwright_api.expect(line).to_contain_text("Анна Соколова")
    await playwright_api.expect(line).to_contain_text(f"предложение · шаг {offer.step + 1} ({POOLS_RU[offer.pool]})")
    await playwright_api.expect(line).to_contain_text(f"оценка {score}")
    await playwright_api.expect(line).not_to_contain_text(" for ")  # not the server's English summary
    await playwright_api.expect(line).to_have_attribute("title", offer.summary)  # which is kept at hand
    await line.click()
    why = entry.locator(".why")
    russian = {
        "paused": "на паузе",
        "offline": "не в сети",
        "declined or missed": "уже отклонил или пропустил",
        "at capacity": "нет свободных мест",
    }
    for reason, n in offer.filtered_counts.items():
        item = why.locator(f'li[data-reason="{reason}"]')
        if reason.startswith("outside step '"):
            pool = reason.split("'")[1]
            await playwright_api.expect(item).to_contain_text(f"вне шага «{POOLS_RU[pool]}»: {n}")
        elif reason in russian:
            await playwright_api.expect(item).to_contain_text(f"{russian[reason]}: {n}")
        await playwright_api.expect(item).not_to_contain_text(reason)
    components = why.locator("tbody tr").first.locator("td").nth(2)
    await playwright_api.expect(components).to_contain_text("ценность")
    await playwright_api.expect(components).to_contain_text("соответствие")
    await playwright_api.expect(components).to_contain_text("загрузка")
    await playwright_api.expect(components).not_to_contain_text("value")

    await page.locator("#lang").click()
    await playwright_api.expect(line).to_contain_text(f"offer · step {offer.step + 1} ({offer.pool})")
    await playwright_api.expect(line).to_contain_text(f"score {score}")
    await playwright_api.expect(entry.locator(".why tbody tr").first).to_contain_text("value")
    await page.locator("#lang").click()


async def test_the_countdown_after_a_reload_counts_the_whole_offer_time(site: Running, page: Any) -> None:
    board = site.server.dispatcher.board
    timeout = 20.0
    web_rules = replace(board.policy.rules(Channel.WEB), offer_timeout=timeout)
    await site.server.dispatcher.submit(
        PolicyReloaded(replace(board.policy, channels={**board.policy.channels, Channel.WEB: web_rules}))
    )
    await only(site, "anna")
    await sign_in(page, site, "anna", "anna-password", "/panel")
    c = await lead(site, "Клиент С Таймером")
    await playwright_api.expect(page.locator("#offer")).to_be_visible()
    expires = board.contacts[c["id"]].offer_expires_at
    assert expires is not None
    while expires - time.time() > timeout - 7:  # a third of the time has gone
        await page.wait_for_timeout(200)
    await page.reload()
    await playwright_api.expect(page.locator("#offer")).to_be_visible()
    await page.wait_for_timeout(500)
    value = float(await page.locator("#countdown-bar").evaluate("b => b.value"))
    expected = 100 * (expires - time.time()) / timeout
    assert abs(value - expected) < 10, (value, expected)  # about 60%, not a full bar


async def test_the_available_button_is_pressed_while_the_manager_is_available(site: Running, page: Any) -> None:
    await only(site)
    await site.server.dispatcher.submit(PresenceSet("anna", Presence.OFFLINE, None, "test"))
    await sign_in(page, site, "anna", "anna-password", "/panel")
    available = page.locator("#go-available")
    await playwright_api.expect(page.locator("#state")).to_have_text("Не в сети")
    await playwright_api.expect(available).to_have_attribute("aria-pressed", "false")
    await playwright_api.expect(page.locator("#go-offline")).to_have_attribute("aria-pressed", "true")
    await available.click()
    await playwright_api.expect(page.locator("#state")).to_have_text("На линии")
    await playwright_api.expect(available).to_have_attribute("aria-pressed", "true")
    await playwright_api.expect(page.locator("#go-offline")).to_have_attribute("aria-pressed", "false")
    await page.locator("#go-break").click()
    await playwright_api.expect(page.locator("#state")).to_have_text("Пауза")
    await playwright_api.expect(available).to_have_attribute("aria-pressed", "false")
    await playwright_api.expect(page.locator("#go-break")).to_have_attribute("aria-pressed", "true")


async def _admin(site: Running, page: Any) -> None:
    await site.server.app[ACCOUNTS].create("root", "root-password", "admin")
    await sign_in(page, site, "root", "root-password", "/dashboard")
    await page.goto(site.url("/admin"))
    await playwright_api.expect(page.locator("#config")).to_contain_text("Готовность к покупке")


async def test_the_admin_page_shows_the_last_routing_step_without_a_time_limit(site: Running, page: Any) -> None:
    await _admin(site, page)
    steps = page.locator("#config ol li")
    n = len(site.server.dispatcher.board.policy.steps)
    await playwright_api.expect(steps).to_have_count(n)
    await playwright_api.expect(steps.last).to_contain_text("без ограничения")
    await playwright_api.expect(page.locator("#config")).not_to_contain_text("null")
    await playwright_api.expect(steps.first).to_contain_text("20 с")
    await page.locator("#lang").click()
    await playwright_api.expect(steps.last).to_contain_text("no limit")
    await page.locator("#lang").click()


async def test_an_error_of_the_admin_page_itself_is_in_the_page_language(site: Running, page: Any) -> None:
    await _admin(site, page)
    form = page.locator("#manager-form")
    await form.locator("input[name=mid]").fill("zoya")
    await form.locator("input[name=skills]").fill("sales")  # no "=level"
    await form.get_by_role("button", name="Сохранить").click()
    toast = page.locator("#toasts")
    await playwright_api.expect(toast).to_contain_text("Ошибка: Навыки")
    await playwright_api.expect(toast).not_to_contain_text("Error")


async def test_the_kpis_of_another_day_say_which_day_they_are_for(site: Running, page: Any) -> None:
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    kpis = page.locator("#kpis")
    total = kpis.locator('[data-kpi="total"] .kpi-k')
    await playwright_api.expect(total).to_have_text("обращений за день")
    await playwright_api.expect(kpis.locator('[data-kpi="waiting"] .kpi-k')).to_have_text("в очереди")
    tz = site.server.services.deployment.tz
    day = datetime.fromtimestamp(time.time() - 3 * 86400, ZoneInfo(tz)).date()
    await page.locator("#date").fill(day.isoformat())
    await playwright_api.expect(total).to_contain_text(f"обращений за {day.day}")  # "за 4 дек. 2026 г."
    await playwright_api.expect(total).not_to_contain_text("за день")
    await playwright_api.expect(total).to_contain_text(str(day.year))
    await playwright_api.expect(kpis.locator('[data-kpi="sl"] .kpi-k')).to_contain_text(f"уровень сервиса за {day.day}")
    await playwright_api.expect(kpis.locator('[data-kpi="waiting"] .kpi-k')).to_have_text("в очереди сейчас")
    await page.locator("#lang").click()
    await playwright_api.expect(total).to_contain_text("contacts on ")
    await playwright_api.expect(total).not_to_contain_text("today")
    await playwright_api.expect(kpis.locator('[data-kpi="staffed"] .kpi-k')).to_have_text("staffed now")
    await page.locator("#lang").click()
    await page.locator("#date").fill(_day(time.time(), tz))  # back to today
    await playwright_api.expect(total).to_have_text("обращений за день")
    await playwright_api.expect(kpis.locator('[data-kpi="waiting"] .kpi-k')).to_have_text("в очереди")


async def test_the_client_card_names_the_manager_of_earlier_contacts_and_the_deal_status(
    site: Running, page: Any
) -> None:
    await only(site, "anna")
    earlier = await lead(site, "Постоянный Клиент", phone="+7 900 444-55-66")
    await site.settle()
    anna = await site.manager_token("anna")
    status, _ = await site.call("POST", f"/api/contacts/{earlier['id']}/accept", anna)
    assert status == 200
    status, deal = await site.call(
        "POST", "/api/crm/deals", anna, json={"contact_id": earlier["id"], "title": "Поставка"}
    )
    assert status == 201, deal
    status, _ = await site.call("POST", f"/api/contacts/{earlier['id']}/finish", anna, json={"outcome": "done"})
    assert status == 200
    await sign_in(page, site, "anna", "anna-password", "/panel")
    await lead(site, "Постоянный Клиент", phone="+7 900 444-55-66")
    card = page.locator("#client-card")
    history = card.locator(".history li")
    await playwright_api.expect(history).to_have_count(1)
    await playwright_api.expect(history).to_contain_text("Анна Соколова")
    await playwright_api.expect(history).not_to_contain_text("· anna")
    await playwright_api.expect(card).to_contain_text("Поставка")
    await playwright_api.expect(card).to_contain_text("в работе")
    await playwright_api.expect(card).not_to_contain_text("· open")
    await page.locator("#lang").click()
    await playwright_api.expect(card).to_contain_text(" · open")
    await page.locator("#lang").click()


async def test_the_pages_have_an_icon_and_no_404(site: Running, page: Any) -> None:
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    await sign_in(page, site, "olga", "olga-password", "/dashboard")
    await playwright_api.expect(page.locator("#managers")).to_contain_text("Анна Соколова")
    await page.wait_for_timeout(1000)  # the browser asks for the icon after the page
    assert not missing, missing
    assert not console, console
    assert await page.locator('link[rel="icon"]').count() == 1
    async with site.session.get(site.url("/favicon.ico")) as resp:
        assert resp.status == 200 and resp.content_type == "image/svg+xml"
        assert len(await resp.read()) < 500
