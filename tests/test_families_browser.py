"""The feature page's new layout in a real browser (Debian's Chromium through Playwright): the
best explanation is drawn above the neighbours and the first example, quantile groups start
collapsed and open on click, whitespace tokens are visible, the family page renders; no script
error. Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)
from tests.web_atlas import SeededAtlas, seed_atlas

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, SeededAtlas]]:
    """A private seeded atlas (an explanation planted on latent 0, a whitespace token among its
    promoted tokens) served by uvicorn in a thread."""
    from latentpedia.store import Store
    from latentpedia.web import create_app

    folder = tmp_path_factory.mktemp("families-browser")
    atlas = seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder)
    store = Store.open(atlas.url)
    source = store.get_source(atlas.model, atlas.sources[0])
    store.add_explanation(source.id, 0, "planted explanation for the layout test", "human")
    vocab = list(store.get_vocab(atlas.model))
    vocab[int(store.get_latent(source.id, 0)["logits"]["pos"][1][0])] = "ĊĊ"  # two newlines
    store.set_vocab(atlas.model, vocab)
    store.close()
    with serve(create_app(atlas.url)) as base:
        yield base, atlas


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    return page, errors


def test_feature_page_leads_with_the_explanation(served, browser):
    base, atlas = served
    page, errors = _open(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/0")
    top = {name: page.locator(selector).first.bounding_box()["y"]
           for name, selector in (("explanation", "#best-explanation"), ("neighbours", "#neighbours"), ("example", ".examples.top .example"))}  # fmt: skip
    assert top["explanation"] < top["neighbours"] < top["example"]
    assert top["explanation"] < 300  # beside the title, not thousands of pixels down
    assert page.locator("#best-explanation").inner_text() == "planted explanation for the layout test"
    assert page.locator("#neighbours a").count() > 0  # the source's own decoder-cosine neighbours
    quantiles = page.locator("details#quantiles")
    assert quantiles.evaluate("el => el.open") is False
    sample = page.locator("#quantiles .example").first
    if sample.count():
        assert not sample.is_visible()
        page.click("#quantiles > summary")
        assert sample.is_visible()
    cell = page.locator(".logits.pos td.token .tokv").nth(1)
    assert cell.inner_text() == "↵↵" and cell.get_attribute("title") == '"\\n\\n"'
    assert errors == []
    page.close()


def test_family_page_renders(served, browser):
    base, atlas = served
    page, errors = _open(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/0/family")
    assert page.locator("#family-tree .fam-card").first.is_visible()
    assert "planted explanation for the layout test" in page.locator("#family-tree").inner_text()
    assert errors == []
    page.close()
