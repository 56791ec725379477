"""A real browser (Debian's Chromium via Playwright): test your own text on a feature page shows
highlighted tokens with values on hover; a search on /search lists latents with links.
Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

from tests.browser import browser_fixture, needs_chromium, open_page, seeded_site  # noqa: F401 (fixtures `browser`, `served`)

pytestmark = needs_chromium


def test_test_your_text_highlights_tokens(served, browser):
    base, atlas = served
    page, dialogs = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/3")
    page.fill("#test-text-input", "The quick brown fox <script>alert(2)</script>")
    page.click("#test-text-go")
    page.wait_for_selector("#test-text-result:not([hidden]) .tok")
    tokens = page.locator("#test-text-tokens .tok")
    assert tokens.count() > 3
    assert "quick brown fox <script>" in "".join(tokens.all_text_contents())
    assert all(title for title in tokens.evaluate_all("els => els.map(e => e.title)"))
    assert page.locator("#test-text-tokens .tok.on").count() + page.locator("#test-text-tokens .tok:not(.on)").count() == tokens.count()
    page.fill("#test-text-input", "   ")
    page.click("#test-text-go")
    page.wait_for_selector("#test-text-error:not([hidden])")
    assert "422" in page.text_content("#test-text-error")
    assert dialogs == []
    page.close()


def test_search_page_lists_latents(served, browser):
    base, atlas = served
    page, dialogs = open_page(browser, f"{base}/")
    page.click("#nav-search")
    page.fill("#search-text", "Hello world, def main(): return 42")
    page.click("#search-go")
    page.wait_for_selector("#search-results tr.hit")
    links = page.locator("#search-results tr.hit a")
    assert links.count() > 0 and links.first.get_attribute("href").startswith(f"/{atlas.model}/")
    assert page.locator("#search-results .tok").count() > 0
    page.locator(".sort-tokens input[name=sort]").nth(1).check()
    page.select_option("#search-view", "topk")
    page.click("#search-go")
    page.wait_for_selector("#topk-results a")
    assert dialogs == []
    page.close()
