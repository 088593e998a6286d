"""The delivery dashboard in real headless Chromium, against a stub of the read API:
log in, find a document, watch a recipient's state change on auto-refresh, switch to
English, look at the units. The same page against the real hub: test_dashboard_e2e.py,
which also keeps the screenshots in docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.monitoring.browser import (
    chromium,
    css,
    keep_screenshot,
    missing_browser,
    text_of,
    visible,
    wait_for,
)
from tests.monitoring.dashboard_stub import PASSWORD, USER, DashboardStub

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser())),
]

NOTICE = "b3f1c2d4-0001-4a55-9e1b-2011092601aa"
OTHER = "c9a8e7f6-0002-4b66-8f2c-2011092602bb"
STATIC = {"/", "/index.html", "/app.js", "/i18n.js", "/style.css", "/favicon.ico", "/favicon.svg"}
API = re.compile(r"^/api/(overview|units|dead-letters|documents(/[^/?]+)?)(\?.*)?$")


def test_dashboard_login_search_document_and_live_states(tmp_path: Path) -> None:
    with DashboardStub() as stub, chromium() as driver:
        driver.get(stub.url)

        # Not logged in: the API says 401 and the page shows the login form.
        wait_for(driver, lambda d: visible(d, "login-form"))
        assert not visible(driver, "app")
        css(driver, "#login-username")[0].send_keys(USER)
        css(driver, "#login-password")[0].send_keys("wrong")
        css(driver, "#login-submit")[0].click()
        wait_for(driver, lambda d: visible(d, "login-error"))
        assert "用户名或密码错误" in text_of(driver, "#login-error")

        css(driver, "#login-username")[0].clear()
        css(driver, "#login-username")[0].send_keys(USER)
        css(driver, "#login-password")[0].send_keys(PASSWORD)
        css(driver, "#login-submit")[0].click()

        # Overview, Chinese first.
        wait_for(driver, lambda d: text_of(d, "#overview-documents-today") == "2")
        assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
        assert text_of(driver, "#overview-units-offline") == "7"
        assert text_of(driver, '#overview-links tr[data-link="parent"]').endswith("0")
        assert css(driver, f'#overview-recent tr[data-message-id="{NOTICE}"]')
        keep_screenshot(driver, tmp_path, "stub-overview.png")

        # Search by document number: only that document is listed.
        css(driver, "#nav-documents")[0].click()
        wait_for(driver, lambda d: visible(d, "search-form"))
        css(driver, "#search-q")[0].send_keys("阳府办〔2011〕45号")
        css(driver, "#search-submit")[0].click()
        wait_for(
            driver, lambda d: len(css(d, '#documents-table tr[data-testid="document-row"]')) == 1
        )
        row = css(driver, f'#documents-table tr[data-message-id="{NOTICE}"]')[0]
        assert "阳山县人民政府办公室" in row.text
        assert any("q=" in path for _, path in stub.requests if path.startswith("/api/documents?"))

        # Open it: every recipient with its state.
        row.click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="recipient-row"]')) == 6)
        assert text_of(driver, "#document-title") == "关于做好2011年国庆节期间值班工作的通知"

        def state(address: str) -> tuple[str, str]:
            cell = css(
                driver, f'tr[data-address="{address}"] [data-testid="recipient-state"] .state'
            )
            return (cell[0].get_attribute("data-state") or "", cell[0].text) if cell else ("", "")

        assert state("qingyuan.yangshan.xwb") == ("signed_for", "已签收")
        assert state("qingyuan.yangshan.fgj") == ("delivered", "已送达")
        assert state("qingyuan.yangshan.yangcheng") == ("routed", "已分发")
        assert state("qingyuan.yangshan.libu") == ("returned", "已退回")
        assert state("qingyuan.yangshan.jiangying") == ("paper_route", "纸质传递")
        libu = text_of(driver, 'tr[data-address="qingyuan.yangshan.libu"]')
        assert "非本单位职责" in libu
        receipts_before = len(css(driver, 'tr[data-testid="receipt-row"]'))

        # Agents send receipts; auto-refresh shows the new states without a reload.
        stub.set_state(NOTICE, "qingyuan.yangshan.fgj", "signed_for")
        stub.set_state(NOTICE, "qingyuan.yangshan.yangcheng", "delivered")
        wait_for(driver, lambda d: state("qingyuan.yangshan.fgj") == ("signed_for", "已签收"))
        wait_for(driver, lambda d: state("qingyuan.yangshan.yangcheng") == ("delivered", "已送达"))
        assert len(css(driver, 'tr[data-testid="receipt-row"]')) == receipts_before + 2
        assert (
            text_of(
                driver,
                'tr[data-address="qingyuan.yangshan.fgj"] [data-testid="recipient-signed-for-at"]',
            )
            != "–"
        )
        keep_screenshot(driver, tmp_path, "stub-document.png")

        # English toggle re-labels in place.
        css(driver, "#lang-toggle")[0].click()
        wait_for(driver, lambda d: state("qingyuan.yangshan.fgj") == ("signed_for", "Signed for"))
        assert driver.execute_script("return document.documentElement.lang") == "en"
        assert text_of(driver, "#nav-units") == "Units"

        # Units: online and offline, certificate about to expire.
        css(driver, "#nav-units")[0].click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="unit-row"]')) == 2)
        libu_unit = css(
            driver, 'tr[data-testid="unit-row"][data-address="qingyuan.yangshan.libu"]'
        )[0]
        assert libu_unit.get_attribute("data-online") == "false"
        assert "Offline" in libu_unit.text and "Expiring soon" in libu_unit.text
        css(driver, "#units-offline-only")[0].click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="unit-row"]')) == 1)

        # API text is shown as text, never as markup.
        with stub.lock:
            stub.data["documents"][1]["title"] = "关于召开全县<b>安全生产</b>工作会议的通知"
        driver.get(stub.url + "#document/" + OTHER)
        wait_for(driver, lambda d: "<b>" in text_of(d, "#document-title"))
        assert not css(driver, "#document-title b")

        # Signing out ends the session: the API refuses and the login form is back.
        css(driver, "#logout")[0].click()
        wait_for(driver, lambda d: visible(d, "login-form"))
        assert not visible(driver, "app")

    # The page only ever read the read API's documented endpoints.
    for method, path in stub.requests:
        if method == "POST":
            assert path in ("/login", "/logout")
        else:
            assert path.split("?")[0] in STATIC or API.match(path), path


def test_overview_cards_open_the_lists_they_count(tmp_path: Path) -> None:
    """超期未签收 counts open recipients past the deadline; its card opens exactly those
    documents (the API's overdue filter); the offline card opens the units, offline first;
    paper-route and refused documents are flagged; who signed is shown; the link card says
    when no link is configured; the favicon is served; the hub's zone is shown; the page
    fits 800 px."""
    with DashboardStub() as stub, chromium() as driver:
        with stub.lock:  # the second document's deadline has passed; zfb has not signed
            stub.data["documents"][1]["deadline"] = "2011-09-26T08:00:00+08:00"
        driver.set_window_size(800, 900)
        driver.get(stub.url)
        wait_for(driver, lambda d: visible(d, "login-form"))
        css(driver, "#login-username")[0].send_keys(USER)
        css(driver, "#login-password")[0].send_keys(PASSWORD)
        css(driver, "#login-submit")[0].click()
        wait_for(driver, lambda d: text_of(d, "#overview-overdue") == "1")
        assert "超期未签收" in text_of(driver, "#card-overdue")
        assert "Asia/Shanghai" in text_of(driver, "#time-zone")
        assert css(driver, ".cards")[0].get_attribute("aria-live") == "polite"
        # 800 px: the menu items stay on one line each, nothing wider than the window
        nav = css(driver, "#nav-documents")[0]
        assert nav.size["height"] < 2.2 * css(driver, "#nav-overview")[0].size["height"] + 1
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 800
        keep_screenshot(driver, tmp_path, "stub-overview-800.png")

        css(driver, "#card-overdue")[0].click()
        wait_for(driver, lambda d: visible(d, "documents-view")
                 and len(css(d, '#documents-table tr[data-testid="document-row"]')) == 1)
        assert css(driver, f'#documents-table tr[data-message-id="{OTHER}"]')
        assert css(driver, "#search-overdue")[0].is_selected()
        assert any("overdue=true" in path for _, path in stub.requests if path.startswith("/api/documents?"))

        css(driver, "#search-reset")[0].click()  # the whole list: the notice is flagged for its paper route
        wait_for(driver, lambda d: len(css(d, '#documents-table tr[data-testid="document-row"]')) == 2)
        def flags() -> list[str]:
            found = css(driver, f'#documents-table tr[data-message-id="{NOTICE}"] [data-testid="document-flag"]')
            return [f"{f.get_attribute('data-flag')}:{f.text}" for f in found]

        assert flags() == ["paper_route:纸质传递"]
        stub.set_state(NOTICE, "qingyuan.yangshan.yangcheng", "rejected")  # a unit refuses it: flagged too
        css(driver, "#search-submit")[0].click()
        wait_for(driver, lambda d: flags() == ["paper_route:纸质传递", "rejected:有拒收"])

        driver.get(stub.url + "#overview")
        wait_for(driver, lambda d: visible(d, "overview-view"))
        css(driver, "#card-units-offline")[0].click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="unit-row"]')) == 1)
        assert css(driver, "#units-offline-only")[0].is_selected()
        assert css(driver, 'tr[data-testid="unit-row"]')[0].get_attribute("data-online") == "false"
        css(driver, "#units-offline-only")[0].click()  # every unit: the offline ones first (the API lists zfb first)
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="unit-row"]')) == 2)
        assert [r.get_attribute("data-online") for r in css(driver, 'tr[data-testid="unit-row"]')] == ["false", "true"]

        # no link configured: the link card says so instead of an empty table
        with stub.lock:
            stub.data["links"] = []
        driver.get(stub.url + "#overview")
        wait_for(driver, lambda d: visible(d, "overview-no-links"))
        assert text_of(driver, "#overview-no-links") == "未配置上级链路" and not visible(driver, "overview-links")

        # the page names its icon, and the icon is served
        icon = css(driver, 'link[rel="icon"]')[0].get_attribute("href") or ""
        served = driver.execute_script(
            "const r = new XMLHttpRequest(); r.open('GET', arguments[0], false); r.send(); "
            "return [r.status, r.getResponseHeader('Content-Type') || '', r.responseText.length];", icon)
        assert served[0] == 200 and "svg" in served[1] and served[2] > 100, served

        driver.get(stub.url + "#document/" + NOTICE)  # who signed for it
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="recipient-row"]')) == 6)
        signer = text_of(driver, 'tr[data-address="qingyuan.yangshan.xwb"] [data-testid="recipient-person"]')
        assert signer == "李明"


def test_dead_letters_page_names_units_codes_tries_and_the_replay_command(tmp_path: Path) -> None:
    """死信: newest first, a page of 50, units by name, the code with its description, the
    tries and the command that replays it; a hostile title stays text; English on the toggle."""
    with DashboardStub() as stub, chromium() as driver:
        with stub.lock:
            stub.data["dead_letters"][0]["title"] = '<img src=x onerror="window.pwned=1">关于<b>防汛</b>的通知'
            stub.data["dead_letters"][0]["reason"] = "unit.x: <script>window.pwned=2</script>"
        driver.get(stub.url)
        wait_for(driver, lambda d: visible(d, "login-form"))
        css(driver, "#login-username")[0].send_keys(USER)
        css(driver, "#login-password")[0].send_keys(PASSWORD)
        css(driver, "#login-submit")[0].click()
        wait_for(driver, lambda d: text_of(d, "#overview-dead-letters") == "60")
        assert "alert" in (css(driver, "#card-dead-letters")[0].get_attribute("class") or "")

        css(driver, "#card-dead-letters")[0].click()
        rows = 'tr[data-testid="dead-letter-row"]'
        wait_for(driver, lambda d: len(css(d, rows)) == 50)
        first = css(driver, rows)[0]
        assert first.get_attribute("data-id") == "1"
        assert "阳山县人民政府办公室" in first.text and "阳山县黎埠镇人民政府" in first.text
        assert "阳府办〔2011〕1号" in first.text
        assert "消息多次处理失败，已转入死信队列" in text_of(driver, f'{rows} [data-testid="dead-letter-code"]')
        assert text_of(driver, f'{rows} [data-testid="dead-letter-tries"]') == "11"
        assert text_of(driver, f'{rows} [data-testid="dead-letter-replay"]') == \
            "docex hub dead-letters replay --home /srv/docex/hub 1"
        # hostile values are text, never markup
        assert '<img src=x onerror="window.pwned=1">' in text_of(driver, f'{rows} [data-testid="dead-letter-title"]')
        assert not css(driver, f"{rows} img") and not css(driver, f"{rows} b") and not css(driver, f"{rows} script")
        assert driver.execute_script("return window.pwned === undefined")
        # died in the hub's ingress: no recipient copy, the whole document
        second = css(driver, rows)[1]
        assert "全部收文单位" in second.text
        assert "第 1–50 条，共 60 条" in text_of(driver, "#dead-letters-page")

        css(driver, "#dead-letters-next")[0].click()
        wait_for(driver, lambda d: len(css(d, rows)) == 10)
        assert css(driver, rows)[0].get_attribute("data-id") == "51"
        assert any("offset=50" in path for _, path in stub.requests if path.startswith("/api/dead-letters?"))
        assert css(driver, "#dead-letters-next")[0].get_attribute("disabled") is not None

        css(driver, "#lang-toggle")[0].click()
        wait_for(driver, lambda d: "51–60 of 60" in text_of(d, "#dead-letters-page"))
        assert "dead-lettered" in text_of(driver, f'{rows} [data-testid="dead-letter-code"]')
        assert text_of(driver, "#nav-dead-letters") == "Dead letters"
        keep_screenshot(driver, tmp_path, "stub-dead-letters.png")
