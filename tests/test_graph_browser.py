"""The attribution-graph page in a real browser (Debian's Chromium via Playwright): the graph
draws, a hovered latent shows its label, two pinned latents grouped into a named supernode are
saved as a new graph under its own link; a script payload as the name stays text. Skipped where
/usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import Session, browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)
from tests.conftest import BACKENDS
from tests.graph_atlas import graph_atlas
from tests.test_graph_web import PROMPT

pytestmark = needs_chromium
NAME = '<img src=x onerror="window.__pwned = 1">group'


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory):
    from latentpedia.web import create_app

    with graph_atlas(request, tmp_path_factory, request.param) as (community, _names), serve(create_app(community.url, private=False)) as base:
        # node threshold 0.95: the tiny model's embeddings carry most of the influence (see test_transcoders)
        r = httpx.post(f"{base}/api/graph/generate", json={"modelId": community.model, "prompt": PROMPT, "maxFeatureNodes": 48,
                                                            "nodeThreshold": 0.95}, timeout=300)
        assert r.status_code == 200, r.text
        yield base, r.json()


def test_pin_two_latents_into_a_supernode_and_save(served, browser):
    base, graph = served
    session = Session(browser, base)
    session.login("alice")
    session.goto(graph["url"])
    page = session.page
    page.wait_for_selector("#graph-app[data-ready=true]")
    latents = page.locator("circle.cross-layer-transcoder")
    assert latents.count() >= 2
    assert page.locator("#graph-svg line").count() > 0
    latents.nth(0).hover()
    assert "#" in page.inner_text("#node-panel")  # "<source> #<index> @<position>"
    pinned = []
    for i in (0, 1):
        latents.nth(i).dispatch_event("click")
        page.click("#pin-button")
        pinned.append(latents.nth(i).get_attribute("data-id"))
        latents.nth(i).dispatch_event("click")  # deselect
    assert page.locator("#pinned-list input").count() == 2
    assert page.locator("#graph-svg circle.pinned").count() == 2
    for box in page.locator("#pinned-list input").all():
        box.check()
    page.fill("#supernode-name", NAME)
    page.click("#group-button")
    assert NAME in page.inner_text("#supernode-list")
    page.click("#save-button")
    page.wait_for_selector("#saved-link")
    saved_url = page.get_attribute("#saved-link", "href")
    assert saved_url.startswith("/graph/") and saved_url != graph["url"]
    q = httpx.get(base + "/api/graph/" + saved_url.removeprefix("/graph/")).json()["qParams"]
    assert q["pinnedIds"] == pinned and q["supernodes"] == [[NAME, *pinned]]
    session.goto(saved_url)  # the shared link restores pins and supernodes
    page.wait_for_selector("#graph-app[data-ready=true]")
    assert page.locator("#graph-svg circle.pinned").count() == 2
    assert NAME in page.inner_text("#supernode-list")
    assert page.evaluate("window.__pwned") is None and not session.alerts
