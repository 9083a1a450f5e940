"""The officials' page (`GET /officials`) in a real headless browser against `tpas serve`.

Debian's chromium driven by Playwright: sign-in with an API key, the ranked list of the key's own
county, tier / village / household filters, a household's reasons (sentences and cause bars), the
Chinese / English switch, region limits (403 in words, never another county's rows), the CSV
download and a phone-sized viewport. Screenshots go to ``$TPAS_TEST_ARTIFACTS`` (else
``<checkout>/test-artifacts/``).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.service.conftest import bearer, score_in_batches

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
COUNTY = "430121"
CAUSES_ZH = {"因病", "因残", "因学/缺教育", "因灾", "缺土地", "缺水", "缺技术", "缺劳力", "缺资金", "交通条件落后",
             "自身发展动力不足", "其他"}
CAUSES_EN = {"illness", "disability", "lack of education", "natural disaster", "shortage of land",
             "shortage of water", "lack of skills", "shortage of labour", "shortage of capital", "poor transport",
             "lack of self-motivation", "other"}
TIERS = {"poverty": ["impoverished", "likely_impoverished", "out_of_poverty"]}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
expect = playwright_api.expect


# -- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("TPAS_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def live_scored(panel_payload, live_server, keys):
    """The small panel scored through /score on the live server (fills the store the page reads)."""
    with httpx.Client(base_url=live_server, timeout=120) as client:
        return score_in_batches(client, keys["registry"], panel_payload)


@pytest.fixture(scope="module")
def raw_ids(live_scored) -> list[str]:
    return [x["household_id"] for x in live_scored]


@pytest.fixture(scope="module")
def api(live_server, keys):
    """Ask the live server directly (the figures the page must show)."""
    def get(path: str, key: str = "official", **params):
        r = httpx.get(f"{live_server}{path}", params=params, headers=bearer(keys[key]), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()
    return get


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page with its console errors, uncaught exceptions and risk-list responses recorded."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.lists = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("response", self._on_response)

    def _on_response(self, response) -> None:
        if "/risk-list" in response.url and response.status == 200 and "format=csv" not in response.url:
            self.lists.append(response.json())

    def unexpected_errors(self, *allowed_status: int) -> list[str]:
        """Console errors other than the browser's own note of an expected refused call (401/403)."""
        ok = tuple(f"status of {s} " for s in allowed_status)
        return [e for e in self.errors if not (e.startswith("Failed to load resource") and any(s in e for s in ok))]

    def listed_regions(self) -> set[str]:
        """Region codes of every row any risk-list call answered to this page."""
        return {x["region_code"] for body in self.lists for x in body["items"]}


@pytest.fixture
def open_page(browser, live_server):
    contexts = []

    def make(width: int = 1280, height: int = 900, **kw) -> Watched:
        ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True, **kw)
        contexts.append(ctx)
        w = Watched(ctx.new_page())
        w.page.set_default_timeout(15_000)
        w.page.goto(f"{live_server}/officials")
        return w

    yield make
    for ctx in contexts:
        ctx.close()


def loads(page) -> int:
    return int(page.locator("#results").get_attribute("data-loads") or 0)


def after_load(page, before: int) -> None:
    """Wait until the list has been shown more than `before` times (the call answered and rendered)."""
    page.wait_for_function("n => Number(document.getElementById('results').dataset.loads || 0) > n", arg=before)


def sign_in(page, key: str) -> None:
    before = loads(page)
    page.get_by_label(re.compile("API 密钥|API key")).fill(key)
    page.locator("#signin-btn").click()
    after_load(page, before)


def rows(page) -> list[dict]:
    return page.eval_on_selector_all("#rows tr", """trs => trs.map(tr => ({pid: tr.dataset.household,
        region: tr.dataset.region, risk: Number(tr.dataset.risk), tier: tr.dataset.tier}))""")


def choose(page, selector: str, value: str) -> None:
    before = loads(page)
    page.select_option(selector, value)
    after_load(page, before)


# -- tests ----------------------------------------------------------------------------------------------------------
def test_official_sees_own_county_ranked_filtered_and_explained(open_page, keys, api, raw_ids, artifacts):
    from serving.pseudonym import pseudonymize

    w = open_page()
    page = w.page
    expect(page.locator("#signin")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "zh-CN"  # Chinese by default
    expect(page.locator("p.advice").first).to_contain_text("系统仅提供建议，由工作人员决定")
    assert w.unexpected_errors() == [], w.errors

    sign_in(page, keys["official"])
    assert keys["official"] not in page.url and "tpas_" not in page.url  # never in the URL
    assert page.evaluate("sessionStorage.getItem('tpas.apiKey')") == keys["official"]
    expect(page.locator("#region")).to_have_value(COUNTY)  # starts on the key's region
    expect(page.locator("#who")).to_contain_text(COUNTY)
    listed = rows(page)
    truth = api("/risk-list", region=COUNTY, task="poverty", page_size=20)
    assert [r["pid"] for r in listed] == [x["household"] for x in truth["items"]]
    assert listed and all(r["region"].startswith(COUNTY) for r in listed)
    risks = [r["risk"] for r in listed]
    assert risks == sorted(risks, reverse=True)
    expect(page.locator("#summary")).to_contain_text(str(truth["total"]))
    html = page.content()
    assert not [h for h in raw_ids if h in html]  # pseudonyms only, never a registry number
    page.screenshot(path=str(artifacts / "officials-desktop-list.png"), full_page=True)

    # tier: another tier than the top rows' gives other rows, all of that tier
    counts = {t: api("/risk-list", region=COUNTY, tier=t, page_size=1)["total"] for t in TIERS["poverty"]}
    tier = next(t for t in TIERS["poverty"] if t != listed[0]["tier"] and counts[t] > 0)
    choose(page, "#tier", tier)
    tiered = rows(page)
    assert tiered and {r["tier"] for r in tiered} == {tier}
    assert {r["pid"] for r in tiered} != {r["pid"] for r in listed}
    expect(page.locator("#summary")).to_contain_text(str(counts[tier]))
    choose(page, "#tier", "")

    # village: the select is filled from /villages; a village's rows are that village's only
    page.wait_for_function("document.querySelectorAll('#village option').length > 1")
    villages = page.eval_on_selector_all("#village option", "os => os.map(o => o.value).filter(Boolean)")
    assert villages == api("/villages", region=COUNTY)["villages"]
    assert all(len(v) == 12 and v.startswith(COUNTY) for v in villages)
    village = listed[-1]["region"]
    choose(page, "#village", village)
    in_village = rows(page)
    assert in_village and {r["region"] for r in in_village} == {village}
    assert [r["pid"] for r in in_village] != [r["pid"] for r in listed]
    choose(page, "#village", "")

    # one household by its registry number: found, shown by pseudonym
    raw = next(h for h in raw_ids if h.startswith(COUNTY))
    before = loads(page)
    page.get_by_label(re.compile("按户编号查询|registry number")).fill(raw)
    page.get_by_role("button", name=re.compile("^(查询|Find)$")).click()
    after_load(page, before)
    assert [r["pid"] for r in rows(page)] == [pseudonymize(raw)]
    before = loads(page)
    page.get_by_role("button", name=re.compile("^(清除|Clear)$")).click()
    after_load(page, before)

    # a household's reasons: sentences and cause bars (up red, down green), in Chinese
    top = page.locator("#rows tr").first
    top.locator("button.pid").click()
    dialog = page.locator("#reasons")
    expect(dialog).to_have_attribute("data-state", "ready")
    expect(dialog).to_be_visible()
    poverty = dialog.locator("section[data-task=poverty]")
    assert poverty.locator("ul.sentences.up li").count() > 0
    assert poverty.locator("ul.sentences li").first.inner_text().strip()
    bars = poverty.locator("ul.bars li")
    assert bars.count() > 0
    assert set(bars.locator(".bar-label").all_inner_texts()) <= CAUSES_ZH
    explanation = api(f"/households/{listed[0]['pid']}/explanation")
    causes = next(s for s in explanation["scores"] if s["task"] == "poverty")["causes"]
    for li in bars.all():
        value = causes[li.get_attribute("data-cause")]
        colour = li.locator(".bar").evaluate("b => getComputedStyle(b).backgroundColor")
        assert colour == ("rgb(192, 57, 43)" if value > 0 else "rgb(46, 125, 50)")
    page.screenshot(path=str(artifacts / "officials-desktop-reasons.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.dataset.pid") == listed[0]["pid"]  # focus back on the row

    # English and back; the choice is remembered (and the key kept for this tab) across a reload
    page.get_by_role("button", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("h1")).to_have_text("Household risk list")
    expect(page.locator("#list thead th").first).to_have_text("Rank")
    expect(page.locator("p.advice").first).to_contain_text("officials decide")
    page.reload()
    after_load(page, 0)  # the key is still in this tab's sessionStorage: signed in again at once
    expect(page.locator("h1")).to_have_text("Household risk list")
    page.screenshot(path=str(artifacts / "officials-desktop-list-en.png"))
    page.locator("#rows tr button.pid").first.focus()
    page.keyboard.press("Enter")  # the keyboard opens the reasons too
    expect(dialog).to_have_attribute("data-state", "ready")
    assert set(dialog.locator("section[data-task=poverty] .bar-label").all_inner_texts()) <= CAUSES_EN
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="中文").click()
    expect(page.locator("h1")).to_have_text("帮扶对象风险名单")
    expect(page.locator("#list thead th").first).to_have_text("排名")

    assert w.unexpected_errors() == [], w.errors
    assert w.listed_regions() and all(r.startswith(COUNTY) for r in w.listed_regions())


def test_csv_download_sends_the_key(open_page, keys, api, live_scored):
    w = open_page()
    page = w.page
    sign_in(page, keys["official"])
    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile("下载 CSV|Download CSV")).click()
    download = info.value
    assert download.suggested_filename == f"risk-poverty-{COUNTY}.csv"
    table = pd.read_csv(io.StringIO(Path(download.path()).read_text(encoding="utf-8")), dtype={"region_code": str})
    assert len(table) == api("/risk-list", region=COUNTY, page_size=1)["total"]
    assert table["region_code"].str.startswith(COUNTY).all() and table["risk"].is_monotonic_decreasing
    assert w.unexpected_errors() == [], w.errors


def test_region_limits_are_shown_in_words(open_page, keys, live_scored):
    w = open_page()
    page = w.page
    # a wrong key: refused in words on the sign-in form
    page.get_by_label(re.compile("API 密钥|API key")).fill("tpas_000000000000_" + "x" * 43)
    page.locator("#signin-btn").click()
    expect(page.locator("#signin-error")).to_contain_text("密钥无效")
    expect(page.locator("#app")).to_be_hidden()

    sign_in(page, keys["official"])
    for region in ("430122", "43"):  # a neighbouring county, the whole province
        before = loads(page)
        page.locator("#region").fill(region)
        page.get_by_role("button", name=re.compile("^(查看|Show)$")).click()
        after_load(page, before)
        message = page.locator("#message")
        expect(message).to_be_visible()
        expect(message).to_have_attribute("data-status", "403")
        expect(message).to_contain_text("超出您的权限范围")
        assert rows(page) == []
    before = loads(page)
    page.locator("#region").fill(COUNTY)
    page.locator("#region").press("Enter")
    after_load(page, before)
    expect(page.locator("#message")).to_be_hidden()
    assert rows(page) and all(r["region"].startswith(COUNTY) for r in rows(page))
    assert all(r.startswith(COUNTY) for r in w.listed_regions())
    assert w.unexpected_errors(401, 403) == [], w.errors


def test_other_region_official_sees_no_430121_household(open_page, keys, api, live_scored):
    w = open_page()
    page = w.page
    sign_in(page, keys["other_official"])
    expect(page.locator("#region")).to_have_value("439999")
    shown = rows(page)
    assert not [r for r in shown if r["region"].startswith(COUNTY)]
    assert all(r["region"].startswith("439999") for r in shown)
    if api("/risk-list", key="other_official", region="439999")["total"] == 0:
        expect(page.locator("#empty")).to_be_visible()
    assert not [r for r in w.listed_regions() if not r.startswith("439999")]
    assert w.unexpected_errors() == [], w.errors


def test_analyst_starts_on_the_province(open_page, keys, api, live_scored):
    w = open_page()
    page = w.page
    sign_in(page, keys["analyst"])
    expect(page.locator("#region")).to_have_value("43")
    expect(page.locator("#summary")).to_contain_text(str(api("/risk-list", key="analyst", region="43")["total"]))
    assert w.unexpected_errors() == [], w.errors


def test_phone_viewport_is_readable(open_page, keys, live_scored, artifacts):
    w = open_page(390, 844, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = w.page
    sign_in(page, keys["official"])
    first = page.locator("#rows tr").first
    expect(first).to_be_visible()
    assert page.locator("#list thead").evaluate("t => t.getBoundingClientRect().height") <= 1  # cards, no header row
    assert first.locator("td").first.evaluate("td => getComputedStyle(td).display") == "grid"
    overflow = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"
    assert page.evaluate(overflow) <= 0
    card = first.bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 390
    page.screenshot(path=str(artifacts / "officials-phone-top.png"))
    page.locator("#results").evaluate("r => r.scrollIntoView()")
    page.screenshot(path=str(artifacts / "officials-phone-list.png"))
    first.locator("button.pid").click()
    expect(page.locator("#reasons")).to_have_attribute("data-state", "ready")
    assert page.locator("#reasons-scroll").evaluate("d => d.scrollWidth - d.clientWidth") <= 0
    page.screenshot(path=str(artifacts / "officials-phone-reasons.png"))
    assert page.evaluate(overflow) <= 0
    assert w.unexpected_errors() == [], w.errors


# -- review lists (tpas roster review) ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def review_run(live_scored):
    """The review lists of the scored panel: one `tpas roster review` run over every region, into the store the
    live server reads."""
    from monitoring import roster
    from serving.store import InferenceStore
    from tpas.config import get_params
    from tpas.settings import get_settings

    store = InferenceStore()
    try:
        store.migrate()
        year = max(x["year"] for x in live_scored)
        return roster.review(store, year, None, get_params(str(get_settings().params_path)).roster)
    finally:
        store.close()


def review_loads(page) -> int:
    return int(page.locator("#review").get_attribute("data-loads") or 0)


def after_review_load(page, before: int) -> None:
    page.wait_for_function("n => Number(document.getElementById('review').dataset.loads || 0) > n", arg=before)


def review_rows(page) -> list[dict]:
    return page.eval_on_selector_all("#review-rows tr", """trs => trs.map(tr => ({pid: tr.dataset.household,
        region: tr.dataset.region, rank: Number(tr.dataset.rank), list: tr.dataset.list,
        why: tr.querySelector('td.why').innerText, sentences: tr.querySelectorAll('td.reason li').length}))""")


def test_review_lists_show_with_reasons(open_page, keys, api, review_run, artifacts):
    w = open_page()
    page = w.page
    sign_in(page, keys["official"])
    before = review_loads(page)
    page.locator("#view-review").click()
    after_review_load(page, before)
    expect(page.locator("#results")).to_be_hidden()
    expect(page.locator("#review")).to_be_visible()
    # recommendations only, said on the page
    expect(page.locator("#review p.advice")).to_contain_text("系统不会自动将任何农户纳入或移出名单")
    seen_rows = seen_empty = 0
    for kind in ("enrolment", "exit", "relapse_watch"):
        if kind != "enrolment":
            before = review_loads(page)
            page.select_option("#review-list", kind)
            after_review_load(page, before)
        truth = api("/review-lists", region=COUNTY, list=kind, page_size=20)
        assert truth["run"]["run_id"] == review_run.run_id
        shown = review_rows(page)
        assert [r["pid"] for r in shown] == [x["household"] for x in truth["items"]], kind
        assert [r["rank"] for r in shown] == [x["rank"] for x in truth["items"]]
        assert all(r["region"].startswith(COUNTY) and r["list"] == kind for r in shown)
        expect(page.locator("#review-rule")).not_to_be_empty()
        if truth["items"]:
            seen_rows += 1
            expect(page.locator("#review-summary")).to_contain_text(str(truth["total"]))
            assert [r["why"] for r in shown] == [x["why_zh"] for x in truth["items"]]  # why listed, in Chinese
            assert all(r["sentences"] > 0 for r in shown)  # the stored reasons, in sentences
            if kind == "enrolment":
                page.screenshot(path=str(artifacts / "officials-review-enrolment.png"), full_page=True)
                page.locator("#review-rows tr button.pid").first.click()  # the household's full reasons
                expect(page.locator("#reasons")).to_have_attribute("data-state", "ready")
                assert page.locator("#reasons section[data-task=poverty] ul.sentences li").count() > 0
                page.keyboard.press("Escape")
        else:
            seen_empty += 1
            expect(page.locator("#review-empty")).to_be_visible()
    assert seen_rows >= 2  # enrolment and relapse watch have households in the county
    # English, and region limits in words
    page.get_by_role("button", name="English").click()
    expect(page.locator("#review p.advice")).to_contain_text("no household enters or leaves the registry automatically")
    expect(page.locator("#review-rule")).to_contain_text("relapse")
    before = review_loads(page)
    page.locator("#region").fill("430122")
    page.locator("#region").press("Enter")
    after_review_load(page, before)
    expect(page.locator("#message")).to_have_attribute("data-status", "403")
    assert review_rows(page) == []
    before = review_loads(page)
    page.locator("#region").fill(COUNTY)
    page.locator("#region").press("Enter")
    after_review_load(page, before)
    expect(page.locator("#message")).to_be_hidden()
    assert review_rows(page)
    page.screenshot(path=str(artifacts / "officials-review-en.png"), full_page=True)
    # back to the risk list of the same region
    before = loads(page)
    page.locator("#view-risk").click()
    after_load(page, before)
    expect(page.locator("#review")).to_be_hidden()
    assert rows(page) and all(r["region"].startswith(COUNTY) for r in rows(page))
    assert w.unexpected_errors(403) == [], w.errors


def test_review_lists_fit_a_phone(open_page, keys, review_run, artifacts):
    w = open_page(390, 844, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = w.page
    sign_in(page, keys["official"])
    before = review_loads(page)
    page.locator("#view-review").click()
    after_review_load(page, before)
    first = page.locator("#review-rows tr").first
    expect(first).to_be_visible()
    overflow = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"
    assert page.evaluate(overflow) <= 0
    card = first.bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 390
    first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "officials-phone-review.png"))
    assert w.unexpected_errors() == [], w.errors
