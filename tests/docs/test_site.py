"""The documentation site of `make docs` (build/docs/html), looked at in headless Chromium.

Every page is served over HTTP on 127.0.0.1 and opened in Debian's Chromium (driven by
Playwright): a page fails when any of its own files (CSS, JS, images) does not load, when its
scripts throw or log an error, when the theme's stylesheet is not applied, when it has no
title heading, or when antsibull-docs wrote an error page in place of a plugin's docs. The
module, role, filter and guide pages must also show what they are about.
"""
import functools
import http.server
import os
import shutil
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "build", "docs", "html")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network (no background connections, no update checks) and running as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGES = sorted(os.path.relpath(os.path.join(d, f), SITE) for d, _s, files in os.walk(SITE) for f in files
               if f.endswith(".html")) if os.path.isdir(SITE) else []
# What some pages must show (page -> texts in its main content).
MUST_SHOW = {
    "collections/fairshare/resources/cgroup_limit_module.html": ["fairshare.resources.cgroup_limit", "limits",
                                                                 "memory_max", "Examples", "Return Values"],
    "collections/fairshare/resources/profiles_role.html": ["fairshare.resources.profiles", "profiles_cgroup_parent"],
    "collections/fairshare/resources/resolve_profiles_filter.html": ["fairshare.resources.resolve_profiles"],
    "collections/fairshare/resources/index.html": ["cgroup_limit", "disk_quota", "tc_shape", "gpu_access",
                                                   "resource_facts", "resource_usage", "profile_host"],
    "guides/profiles.html": ["tiers", "defaults"],
    "guides/awx.html": ["job template", "survey"],
}
MALFORMED = "was malformed"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    if not PAGES:
        pytest.fail("no site in %s: run `make docs`" % SITE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=SITE))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Viewer(object):
    """One Chromium tab that opens page after page and collects each one's problems."""

    def __init__(self, browser, site):
        self.page = browser.new_page()
        self.problems = []
        self.page.on("console", lambda msg: self.problems.append("console %s: %s" % (msg.type, msg.text))
                     if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.problems.append("script error: %s" % exc))
        self.page.on("requestfailed", lambda req: self.problems.append("failed: %s (%s)" % (req.url, req.failure)))
        self.page.on("response", lambda resp: self.problems.append("HTTP %d: %s" % (resp.status, resp.url))
                     if resp.status >= 400 else None)
        # Nothing leaves the machine: a link to another site is not loaded (and not a failure).
        self.page.route(lambda u: not u.startswith(site), lambda route: route.abort())

    def look_at(self, url):
        """Open URL; -> (problems, main text, what the page's styles and headings are)."""
        self.problems = []
        self.page.goto(url, wait_until="load")
        styled = self.page.evaluate("""() => {
            const sheets = Array.from(document.styleSheets).filter(s => s.href && s.href.includes('/_static/'));
            const rules = sheets.reduce((n, s) => n + s.cssRules.length, 0);
            const nav = document.querySelector('.wy-nav-side, nav');
            return {sheets: sheets.length, rules: rules,
                    navFixed: nav ? getComputedStyle(nav).position : null,
                    h1: Array.from(document.querySelectorAll('h1')).map(h => h.innerText)};
        }""")
        problems = self.problems
        if not styled["sheets"] or styled["rules"] < 100:
            problems.append("theme stylesheet not applied (%d sheets, %d rules)" % (styled["sheets"], styled["rules"]))
        if not styled["h1"] and not url.endswith(("search.html", "/index.html")):
            problems.append("no h1 heading")
        main = self.page.query_selector("[role=main], .rst-content")
        main = main.inner_text() if main else ""
        if MALFORMED in main:
            problems.append("antsibull-docs error page: " + main[max(0, main.index(MALFORMED) - 120):][:240])
        return problems, main, styled


def test_every_page_renders_in_chromium(site, browser):
    bad = {}
    viewer = Viewer(browser, site)
    for rel in PAGES:
        problems, main, _styled = viewer.look_at(site + rel)
        for text in MUST_SHOW.get(rel, []):
            if text not in main:
                problems.append("does not show %r" % text)
        if problems:
            bad[rel] = problems
    print("docs site: %d pages opened in %s; %d with problems" % (len(PAGES), os.path.basename(CHROMIUM), len(bad)))
    assert not bad, "\n".join("%s: %s" % (rel, "; ".join(p[:5])) for rel, p in sorted(bad.items()))
    assert set(MUST_SHOW) <= set(PAGES), sorted(set(MUST_SHOW) - set(PAGES))


def test_module_page_screenshot(site, browser):
    """A picture of one page (build/docs/cgroup_limit.png) for a person to look at; the options table is drawn."""
    viewer = Viewer(browser, site)
    viewer.page.set_viewport_size({"width": 1280, "height": 900})
    problems, _main, styled = viewer.look_at(site + "collections/fairshare/resources/cgroup_limit_module.html")
    viewer.page.screenshot(path=os.path.join(os.path.dirname(SITE), "cgroup_limit.png"))
    table = viewer.page.query_selector("table")
    assert table is not None and table.bounding_box()["width"] > 400, "options table not drawn"
    assert not problems, problems
    assert styled["navFixed"] in ("fixed", "absolute", "sticky"), styled
