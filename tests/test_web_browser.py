"""A real browser (Debian's Chromium driven by Playwright) on a feature page: highlighted
tokens render, expand-context reveals the hidden context, no planted script runs.
Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

from tests.browser import browser_fixture, needs_chromium, open_page, seeded_site  # noqa: F401 (fixtures `browser`, `served`)

pytestmark = needs_chromium


def test_feature_page_highlights_tokens(served, browser):
    base, atlas = served
    page, dialogs = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/0")
    highlighted = page.locator(".examples.top .tok.on:visible")
    assert highlighted.count() > 0
    colour = highlighted.first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour.startswith("rgba(232, 116, 59")
    assert highlighted.first.get_attribute("title")  # the value, on hover
    hidden = page.locator(".examples .tok.ctx")
    if hidden.count():
        assert not hidden.first.is_visible()
        page.click("label[for=expand-context]")
        assert hidden.first.is_visible()
    assert page.locator("svg.hist").count() == 2
    assert dialogs == []
    page.close()


def test_planted_scripts_do_not_run(served, browser):
    base, atlas = served
    source, index = atlas.payload_feature
    for path in (f"/{atlas.model}/{source}/{index}", f"/{atlas.model}/{atlas.sources[0]}/0", "/"):
        page, dialogs = open_page(browser, base + path)
        page.wait_for_load_state("load")
        assert dialogs == [], path
        assert "<script>alert(1)</script>" in page.inner_text("main") or path == "/"
        page.close()


def test_arrow_keys_move_between_latents(served, browser):
    base, atlas = served
    page, _ = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/3")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/{atlas.sources[0]}/4")
    page.close()


def test_source_page_sorts_and_filters(served, browser):
    base, atlas = served
    page, _ = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}")
    page.click("th >> text=max activation")
    page.wait_for_url("**order_by=max_act**")
    maxima = [float(x) for x in page.locator("table.latents tbody td:nth-child(2)").all_inner_texts()]
    assert len(maxima) == 50 and maxima == sorted(maxima, reverse=True)
    shown = sorted(float(x.rstrip("%")) for x in page.locator("table.latents tbody td:nth-child(3)").all_inner_texts())
    threshold = shown[len(shown) // 2] / 100
    page.fill("input[name=min_density]", str(threshold))
    page.click("button[type=submit]")
    page.wait_for_url(f"**min_density={threshold}**")
    densities = [float(x.rstrip("%")) for x in page.locator("table.latents tbody td:nth-child(3)").all_inner_texts()]
    assert densities and min(densities) >= 100 * threshold - 0.1
    page.close()
