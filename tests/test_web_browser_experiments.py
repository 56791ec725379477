"""The feature page's Experiments panel in a real browser (Debian's Chromium via Playwright):
steering streams both completions side by side; ablation and DLA fill their tables.
Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

from tests.browser import browser_fixture, needs_chromium, open_page, seeded_site  # noqa: F401 (fixtures `browser`, `served`)

pytestmark = needs_chromium
PROMPT = "The function returns"


def test_steer_shows_default_and_steered_completions(served, browser):
    base, atlas = served
    page, dialogs = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/3")
    page.fill("#steer-prompt", PROMPT)
    page.fill("#steer-n", "5")
    page.eval_on_selector("#steer-strength", "el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
    page.click("#steer-go")
    page.wait_for_selector("#steer-default[data-done='1']", timeout=60_000)
    page.wait_for_selector("#steer-steered[data-done='1']", timeout=60_000)
    default, steered = page.inner_text("#steer-default"), page.inner_text("#steer-steered")
    assert default.startswith(PROMPT) and steered.startswith(PROMPT)
    assert len(default) > len(PROMPT) and len(steered) > len(PROMPT)
    assert page.inner_text("#exp-msg") == "" and dialogs == []
    page.close()


def test_ablate_and_dla_tables(served, browser):
    base, atlas = served
    page, _ = open_page(browser, f"{base}/{atlas.model}/{atlas.sources[0]}/3")
    page.click("#exp-ablate summary")
    page.fill("#ablate-prompt", PROMPT)
    page.click("#ablate-go")
    page.wait_for_selector("#ablate-table tr:nth-child(3)", timeout=60_000)
    assert "mean next-token loss" in page.inner_text("#ablate-summary")
    page.click("#exp-dla summary")
    page.fill("#dla-prompt", PROMPT)
    page.fill("#dla-target", "5")
    page.click("#dla-go")
    page.wait_for_selector("#dla-table tr:nth-child(3)", timeout=60_000)
    assert "per unit of activation" in page.inner_text("#dla-summary")
    page.fill("#dla-target", "several words at once")
    page.click("#dla-go")
    page.wait_for_function("document.getElementById('exp-msg').textContent.includes('not one')", timeout=60_000)
    page.close()
