"""`segsql docs`: the static site, checked in a real browser and by reading its files.

The browser tests drive the system's headless Chromium (Debian `chromium` + `chromium-driver`)
with Selenium against the site built from the example project with `--with-data` after two
snapshots, so members, KPIs and the growth chart are on the pages too. One browser serves the
whole module. Without Chromium they skip locally, but fail in CI (CI=true), where `.ci/run`
installs it: a browser test that silently never runs is worse than none.

The file tests check what a browser cannot show quickly: every link of every page resolves to a
file (and an anchor) of the site, nothing is fetched from the network, KPI values equal
`segsql kpis`, and the lineage graphs stay small on wide graphs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from conftest import copy_example, example_missing_reason
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait
from typer.testing import CliRunner

from segsql.cli import app
from segsql.docs_site import GRAPH_LIMIT, neighbourhood_svg

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1280,900",
)
PAGE_SIZE = 50  # docs_site.PAGE_SIZE: the catalogue shows at most this many rows at once
SNAPSHOTS = ("--from", "2024-05-31", "--to", "2024-06-30", "--every", "month")
cli = CliRunner()


def segsql(project: Path, *args: str) -> str:
    result = cli.invoke(app, ["-p", str(project), *args])
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------------------------
# the site, built once per module


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = example_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return copy_example(tmp_path_factory.mktemp("docs") / "example")


@pytest.fixture(scope="module")
def site(example: Path) -> Path:
    """The example project's site with members, KPIs and two snapshots of history."""
    segsql(example, "snapshot", *SNAPSHOTS)
    segsql(example, "docs", "--with-data")
    return example / "target" / "docs"


@pytest.fixture(scope="module")
def catalogue(site: Path) -> list[dict[str, Any]]:
    """The segment rows the catalogue page embeds (what its script filters)."""
    page = (site / "index.html").read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="catalogue"[^>]*>(.*?)</script>', page)
    assert found, "index.html embeds no catalogue"
    rows: list[dict[str, Any]] = json.loads(found[1].replace("<\\/", "</"))
    return rows


# ---------------------------------------------------------------------------------------------
# the browser


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {missing}")
        pytest.skip(f"no browser for the docs site tests: {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: WebDriver, site: Path, page: str) -> None:
    browser.get((site / page).as_uri())
    assert_page_loaded(browser)


def assert_page_loaded(browser: WebDriver) -> None:
    """A page of the site, not Chromium's error page for a missing file."""
    assert browser.current_url.startswith("file://"), browser.current_url
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "ERR_FILE_NOT_FOUND" not in body and "could not be found" not in body, (
        f"{browser.current_url}: {body[:200]}"
    )
    assert browser.title.endswith("segsql docs"), browser.title
    assert_no_console_errors(browser)


def assert_no_console_errors(browser: WebDriver) -> None:
    """Script errors and failed loads (a missing stylesheet, a missing page) the page logged."""
    entries = browser.get_log("browser")  # reading the log empties it
    problems = [e for e in entries if e["level"] == "SEVERE"]
    assert not problems, f"console of {browser.current_url}: {problems}"


def visible_rows(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#results tr")


def row_names(browser: WebDriver) -> list[str]:
    return [r.find_element(By.CSS_SELECTOR, "td a").text for r in visible_rows(browser)]


def wait_for_rows(browser: WebDriver, count: int) -> None:
    WebDriverWait(browser, 5).until(lambda b: len(visible_rows(b)) == count)


def expected_visible(matching: int) -> int:
    return min(matching, PAGE_SIZE)


# ---------------------------------------------------------------------------------------------
# browser: the catalogue


def test_catalogue_lists_segments_a_page_at_a_time(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]]
) -> None:
    open_page(browser, site, "index.html")
    wait_for_rows(browser, expected_visible(len(catalogue)))
    summary = browser.find_element(By.ID, "summary").text
    assert summary == f"{len(catalogue)} segments"
    if len(catalogue) > PAGE_SIZE:
        browser.find_element(By.ID, "next").click()
        wait_for_rows(browser, min(len(catalogue) - PAGE_SIZE, PAGE_SIZE))
        shown = set(row_names(browser))
        assert shown <= {r["name"] for r in catalogue[PAGE_SIZE:]}
    assert_no_console_errors(browser)


def test_typing_in_search_filters_the_list(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]]
) -> None:
    open_page(browser, site, "index.html")
    before = len(visible_rows(browser))
    search = browser.find_element(By.ID, "search")
    search.send_keys("vip")
    expected = [r["name"] for r in catalogue if "vip" in _searchable(r)]
    assert 0 < len(expected) < before
    wait_for_rows(browser, expected_visible(len(expected)))
    assert row_names(browser) == expected[:PAGE_SIZE]
    assert browser.find_element(By.ID, "summary").text == (
        f"{len(expected)} of {len(catalogue)} segments match"
    )
    search.send_keys(" nothing-matches-this")
    wait_for_rows(browser, 0)
    search.clear()
    search.send_keys(" ")  # clear() fires no input event; typing does
    wait_for_rows(browser, before)
    assert_no_console_errors(browser)


def test_search_reaches_source_columns(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]]
) -> None:
    open_page(browser, site, "index.html")
    browser.find_element(By.ID, "search").send_keys("orders.amount")
    expected = [r["name"] for r in catalogue if "orders.amount" in r["columns"]]
    assert expected
    wait_for_rows(browser, expected_visible(len(expected)))
    assert row_names(browser) == expected[:PAGE_SIZE]


@pytest.mark.parametrize("facet", ["kind", "tag", "owner", "entity"])
def test_a_facet_filter_keeps_only_its_segments(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]], facet: str
) -> None:
    open_page(browser, site, "index.html")
    select = Select(browser.find_element(By.ID, f"filter-{facet}"))
    values = [o.get_attribute("value") or "" for o in select.options]
    values = [v for v in values if v]
    assert values, f"the {facet} filter offers nothing"
    # the value shared by most segments: a filter that keeps many rows and still hides some
    value = max(values, key=lambda v: (len(_with_facet(catalogue, facet, v)), v))
    expected = _with_facet(catalogue, facet, value)
    assert 0 < len(expected) < len(catalogue)
    select.select_by_value(value)
    wait_for_rows(browser, expected_visible(len(expected)))
    assert row_names(browser) == expected[:PAGE_SIZE]
    column = {"kind": 1, "entity": 2, "owner": 3, "tag": 4}[facet]
    for row in visible_rows(browser):
        cell = row.find_elements(By.TAG_NAME, "td")[column].text
        assert (f"#{value}" in cell.split()) if facet == "tag" else cell == value
    assert f"{facet}={value}" in browser.current_url  # the filter is kept in the address
    assert_no_console_errors(browser)


def test_filters_and_search_combine(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]]
) -> None:
    open_page(browser, site, "index.html")
    Select(browser.find_element(By.ID, "filter-tag")).select_by_value("core")
    browser.find_element(By.ID, "search").send_keys("active")
    expected = [r["name"] for r in catalogue if "core" in r["tags"] and "active" in _searchable(r)]
    assert expected
    wait_for_rows(browser, expected_visible(len(expected)))
    assert row_names(browser) == expected[:PAGE_SIZE]


def test_sorting_by_members_puts_the_largest_first(browser: WebDriver, site: Path) -> None:
    open_page(browser, site, "index.html")
    Select(browser.find_element(By.ID, "sort")).select_by_value("members")
    WebDriverWait(browser, 5).until(lambda b: "sort=members" in b.current_url)
    members = [
        int(r.find_element(By.CSS_SELECTOR, "td.num").text.replace(",", ""))
        for r in visible_rows(browser)
    ]
    assert members == sorted(members, reverse=True) and members[0] > 0


# ---------------------------------------------------------------------------------------------
# browser: segment pages and links


def test_a_segment_page_shows_its_graph_and_sql(browser: WebDriver, site: Path) -> None:
    open_page(browser, site, "segments/vip_active.html")
    assert browser.find_element(By.ID, "segment-name").text == "vip_active"
    graph = browser.find_element(By.CSS_SELECTOR, "#graph svg.dag")
    assert graph.is_displayed() and graph.size["width"] > 100
    labels = {t.text for t in graph.find_elements(By.TAG_NAME, "text")}
    assert {"vip_active", "active", "all_customers", "vip_active_eu"} <= labels
    focus = graph.find_element(By.CSS_SELECTOR, ".node.focus text").text
    assert focus == "vip_active"
    local = browser.find_element(By.ID, "sql-local")
    assert local.is_displayed()
    assert "SELECT DISTINCT" in local.text and "lifetime_revenue >= 2500" in local.text
    assert not browser.find_element(By.ID, "sql-bq").is_displayed()
    browser.find_element(By.ID, "tab-bq").click()
    assert browser.find_element(By.ID, "sql-bq").is_displayed()
    assert not local.is_displayed()
    assert (
        "-- segment: vip_active (segments/value.yml:" in browser.find_element(By.ID, "sql-bq").text
    )
    definition = browser.find_element(By.ID, "definition").text
    assert definition.startswith("- name: vip_active")
    assert_no_console_errors(browser)


def test_a_segment_page_shows_members_kpis_and_growth(browser: WebDriver, site: Path) -> None:
    open_page(browser, site, "segments/vip_active.html")
    members = browser.find_element(By.ID, "members").text
    assert re.match(r"[\d,]+ · [\d.]+% of customer · [\d.]+% of active", members), members
    kpis = browser.find_element(By.ID, "kpis")
    size_row = kpis.find_element(By.CSS_SELECTOR, "tbody tr").text.split()
    assert size_row[0] == "size" and size_row[1] == members.split()[0]
    chart = browser.find_element(By.CSS_SELECTOR, "#growth svg")
    assert chart.is_displayed()
    assert len(chart.find_elements(By.TAG_NAME, "circle")) == 2  # one point per snapshot


def test_clicking_a_graph_node_opens_that_segment(browser: WebDriver, site: Path) -> None:
    open_page(browser, site, "segments/vip_active.html")
    node = browser.find_element(
        By.XPATH, "//*[@id='graph']//*[local-name()='a'][.//*[text()='active']]"
    )
    node.click()
    WebDriverWait(browser, 5).until(lambda b: b.current_url.endswith("/segments/active.html"))
    assert_page_loaded(browser)
    assert browser.find_element(By.ID, "segment-name").text == "active"


def test_links_lead_from_catalogue_to_segment_entity_and_columns(
    browser: WebDriver, site: Path
) -> None:
    open_page(browser, site, "index.html")
    browser.find_element(By.ID, "search").send_keys("vip_active_eu")
    wait_for_rows(browser, 1)
    browser.find_element(By.LINK_TEXT, "vip_active_eu").click()
    assert_page_loaded(browser)
    assert browser.find_element(By.ID, "segment-name").text == "vip_active_eu"
    browser.find_element(By.CSS_SELECTOR, ".crumbs a[href$='vip_active.html']").click()
    assert_page_loaded(browser)
    assert browser.find_element(By.ID, "segment-name").text == "vip_active"
    browser.find_element(By.LINK_TEXT, "orders.amount").click()
    assert_page_loaded(browser)
    assert browser.current_url.endswith("/columns.html#orders.amount")
    row = browser.find_element(By.ID, "orders.amount")
    assert "vip_active" in row.get_attribute("textContent")
    browser.find_element(By.LINK_TEXT, "Segments").click()
    assert_page_loaded(browser)
    browser.find_element(By.LINK_TEXT, "customer").click()
    assert_page_loaded(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "customer"
    assert browser.find_element(By.ID, "feature-lifetime_revenue").is_displayed()
    browser.find_element(By.LINK_TEXT, "Browse them in the catalogue").click()
    assert_page_loaded(browser)
    entity = Select(browser.find_element(By.ID, "filter-entity"))
    assert entity.first_selected_option.get_attribute("value") == "customer"


def test_a_tag_badge_opens_the_catalogue_filtered_by_it(
    browser: WebDriver, site: Path, catalogue: list[dict[str, Any]]
) -> None:
    open_page(browser, site, "segments/vip_active.html")
    browser.find_element(By.LINK_TEXT, "#loyalty").click()
    assert_page_loaded(browser)
    tag = Select(browser.find_element(By.ID, "filter-tag"))
    assert tag.first_selected_option.get_attribute("value") == "loyalty"
    expected = _with_facet(catalogue, "tag", "loyalty")
    wait_for_rows(browser, expected_visible(len(expected)))
    assert row_names(browser) == expected[:PAGE_SIZE]


def test_every_page_loads_without_console_errors(browser: WebDriver, site: Path) -> None:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    for page in pages:
        open_page(browser, site, page)


# ---------------------------------------------------------------------------------------------
# files: links, network, KPIs, scale


class _Links(HTMLParser):
    """Every href/src of a page, and every id it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append(value)
            if name == "id" and value is not None:
                self.ids.add(value)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_every_link_of_every_page_resolves_inside_the_site(site: Path) -> None:
    root = site.resolve()
    pages = {p.resolve(): _parse(p) for p in site.rglob("*.html")}
    broken: list[str] = []
    anchors_checked = 0
    for page, links in pages.items():
        for ref in links.refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page.name} fetches {ref}"
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.is_file() or root not in target.parents:
                broken.append(f"{page.relative_to(root)} -> {ref}")
                continue
            # index.html#tag=core is a catalogue filter (read by app.js), not an anchor
            is_anchor = bool(parts.fragment) and "=" not in parts.fragment
            if is_anchor and target in pages:
                anchors_checked += 1
                if unquote(parts.fragment) not in pages[target].ids:
                    broken.append(f"{page.relative_to(root)} -> {ref} (no such anchor)")
    assert not broken, "\n".join(broken)
    assert anchors_checked > 0


def test_the_site_needs_no_network(site: Path) -> None:
    for path in site.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
            assert urls <= {"http://www.w3.org/2000/svg"}, f"{path.name}: {urls}"


def test_kpi_values_equal_segsql_kpis(tmp_path: Path) -> None:
    reason = example_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    project = copy_example(tmp_path / "example")
    (project / "segments" / "docs_kpis.yml").write_text(
        "kpis:\n"
        "  - {name: revenue, entity: customer, expr: sum(lifetime_revenue), format: currency}\n",
        encoding="utf-8",
    )
    segsql(project, "docs", "--with-data")
    rows = json.loads(segsql(project, "kpis", "--select", "vip_active", "--format", "json"))
    [vip] = [r for r in rows["rows"] if r["segment"] == "vip_active"]
    page = (project / "target" / "docs" / "segments" / "vip_active.html").read_text()
    revenue = re.search(r"<code>revenue</code></td><td class=\"num\">([^<]+)</td>", page)
    assert revenue is not None, "no revenue row in the KPI table"
    assert revenue[1] == f"{vip['revenue']:,.2f}"
    assert "<h2>Growth" not in page  # no snapshot was recorded: no chart


def _wide_manifest(children: int, grandchildren: int) -> dict[str, Any]:
    """root -> hub -> `children` segments, each with `grandchildren` of its own."""

    def entry(parent: str | None, kids: list[str]) -> dict[str, Any]:
        return {
            "kind": "value",
            "entity": "customer",
            "parent": parent,
            "union": [],
            "intersect": [],
            "exclude": [],
            "depends_on": [parent] if parent else [],
            "children": kids,
        }

    kids = [f"c{i:03}" for i in range(children)]
    segments = {"root": entry(None, ["hub"]), "hub": entry("root", kids)}
    for kid in kids:
        grand = [f"{kid}_g{j}" for j in range(grandchildren)]
        segments[kid] = entry("hub", grand)
        segments.update({g: entry(kid, []) for g in grand})
    return {"segments": segments}


def test_a_hub_with_hundreds_of_children_draws_a_small_graph() -> None:
    info = _wide_manifest(children=300, grandchildren=3)
    graph = neighbourhood_svg(info, "hub")
    assert graph["size"] == 1 + 1 + GRAPH_LIMIT  # hub, root, as many children as fit
    assert graph["hidden_down"] == 300 - GRAPH_LIMIT + 900
    assert "+1,184 more downstream" in graph["svg"]
    assert graph["svg"].count("<rect") == graph["size"] + 1  # and the "more" box


def test_a_level_that_does_not_fit_is_left_out_whole() -> None:
    info = _wide_manifest(children=4, grandchildren=5)  # 4 children fit, 20 grandchildren do not
    graph = neighbourhood_svg(info, "hub")
    assert graph["size"] == 1 + 1 + 4
    assert "c000_g0" not in graph["svg"]
    assert "+20 more downstream" in graph["svg"]


def test_catalogue_page_carries_no_graphs(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "<svg" not in index


def _searchable(row: dict[str, Any]) -> str:
    """What the catalogue's search looks in (app.js, `r.text`)."""
    fields = [row["name"], row["description"], row["owner"], row["kind"], row["entity"]]
    return " ".join([*fields, " ".join(row["tags"]), " ".join(row["columns"])]).lower()


def _with_facet(catalogue: list[dict[str, Any]], facet: str, value: str) -> list[str]:
    if facet == "tag":
        return [r["name"] for r in catalogue if value in r["tags"]]
    return [r["name"] for r in catalogue if r[facet] == value]
