"""The information centre's dashboard against the real hub, in headless Chromium: log in
with a login made by `docex hub user add`, find a document a unit sent in this test, and
watch its recipients' states change as the agents receipt it (送达, 签收, 退回). Keeps
docs/dashboard.png and docs/dashboard-overview.png (refresh: DOCEX_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from collections.abc import Iterator
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
from tests.monitoring.localhub import PASSWORD, PREFIX, STAFF, County, running_county

pytestmark = [
    pytest.mark.browser,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
    pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser())),
]

ZFB, XWB, FGJ, XXZX = (f"{PREFIX}.{u}" for u in ("zfb", "xwb", "fgj", "xxzx"))
TITLE = "关于做好2011年国庆节期间值班工作的通知"
DOC_NUMBER = "阳府办〔2011〕45号"
REASON = "非本单位职责，请转县应急办"
CITY = "qingyuan.swb"  # beyond the county: waits on the parent link


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[County]:
    # 发改局 (fgj) starts its terminal later in the test; 信息中心 (xxzx) stays off line;
    # the link to the city has no bridge connected.
    root = tmp_path_factory.mktemp("dashboard-e2e")
    with running_county(root, ("zfb", "xwb", "fgj", "xxzx"), agents=("zfb", "xwb"), metrics=False,
                        parent_link=True) as c:
        yield c


def test_dashboard_follows_a_document_through_the_real_hub(county: County, tmp_path: Path) -> None:
    notice = county.send(ZFB, (XWB, FGJ), TITLE, DOC_NUMBER, priority="加急")
    other = county.send(ZFB, (XWB,), "关于报送国庆节期间值班表的通知", "阳府办〔2011〕46号", cc=(CITY,))
    county.wait_states(notice, {XWB: "delivered", FGJ: "routed"})
    county.wait_states(other, {XWB: "delivered", CITY: "routed"})

    with chromium() as driver:
        driver.get(county.api_url + "/")
        wait_for(driver, lambda d: visible(d, "login-form"))
        css(driver, "#login-username")[0].send_keys(STAFF)
        css(driver, "#login-password")[0].send_keys(PASSWORD)
        css(driver, "#login-submit")[0].click()

        # Overview: today's documents, the off-line units, the recent list, the link.
        wait_for(driver, lambda d: text_of(d, "#overview-documents-today") == "2")
        assert text_of(driver, "#overview-pending-sign-for") == "4"
        assert text_of(driver, "#overview-units-offline") == "2"  # fgj and xxzx
        assert css(driver, f'#overview-recent tr[data-message-id="{notice}"]')
        link = '#overview-links tr[data-link="parent"]'
        assert css(driver, f"{link} [data-state]")[0].get_attribute("data-state") == "down"
        assert "中断" in text_of(driver, link)
        wait_for(driver, lambda d: int(text_of(d, f"{link} td.num") or 0) >= 1)  # the document for the city

        # Search by document number, open it.
        css(driver, "#nav-documents")[0].click()
        wait_for(driver, lambda d: visible(d, "search-form"))
        css(driver, "#search-q")[0].send_keys(DOC_NUMBER)
        css(driver, "#search-submit")[0].click()
        wait_for(driver, lambda d: len(css(d, '#documents-table tr[data-testid="document-row"]')) == 1)
        row = css(driver, f'#documents-table tr[data-message-id="{notice}"]')[0]
        assert "阳山县人民政府办公室" in row.text
        row.click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="recipient-row"]')) == 2)
        assert text_of(driver, "#document-title") == TITLE

        def state(address: str) -> tuple[str, str]:
            cell = css(driver, f'tr[data-address="{address}"] [data-testid="recipient-state"] .state')
            return (cell[0].get_attribute("data-state") or "", cell[0].text) if cell else ("", "")

        assert state(XWB) == ("delivered", "已送达")
        assert state(FGJ) == ("routed", "已分发")

        # 发改局's terminal comes on line: it takes the document and its delivered
        # receipt shows up on the page by auto-refresh, no reload.
        county.net.start_agent(FGJ)
        wait_for(driver, lambda d: state(FGJ) == ("delivered", "已送达"), timeout=90)

        # Staff sign for at 县委办 and return at 发改局.
        county.sign_for(XWB, notice)
        county.return_(FGJ, notice, REASON)
        wait_for(driver, lambda d: state(XWB) == ("signed_for", "已签收"), timeout=60)
        wait_for(driver, lambda d: state(FGJ) == ("returned", "已退回"), timeout=60)
        assert REASON in text_of(driver, f'tr[data-address="{FGJ}"]')
        assert text_of(driver, f'tr[data-address="{XWB}"] [data-testid="recipient-signed-for-at"]') != "–"
        receipts = sorted(r.get_attribute("data-recipient") or "" for r in css(driver, 'tr[data-testid="receipt-row"]'))
        assert receipts == [FGJ, FGJ, XWB, XWB]  # delivered and returned, delivered and signed for
        keep_screenshot(driver, tmp_path, "dashboard.png", docs=True)

        # Units: on line, off line, what each sent and received.
        css(driver, "#nav-units")[0].click()
        wait_for(driver, lambda d: len(css(d, 'tr[data-testid="unit-row"]')) == 4)

        def unit(address: str) -> str:
            return css(driver, f'tr[data-testid="unit-row"][data-address="{address}"]')[0].get_attribute("data-online") or ""

        wait_for(driver, lambda d: unit(FGJ) == "true", timeout=30)
        assert (unit(ZFB), unit(XWB), unit(XXZX)) == ("true", "true", "false")

        css(driver, "#nav-overview")[0].click()
        wait_for(driver, lambda d: text_of(d, "#overview-units-offline") == "1")
        assert text_of(driver, "#overview-pending-sign-for") == "2"  # the second one: 县委办, the city
        keep_screenshot(driver, tmp_path, "dashboard-overview.png", docs=True)
