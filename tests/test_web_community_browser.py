"""Accounts and community in a real browser (Debian's Chromium via Playwright): log in, explain,
vote, comment, make a list and add a latent to it, log out; and script payloads typed into every
user field (username, explanation, comment, list name/description/note) never run and show as
text. Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import Session, browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)
from tests.community_fixtures import PASSWORD, CommunityAtlas, community_atlas

pytestmark = needs_chromium
SOURCE = "1-mlp"
PAYLOADS = ("<script>window.__pwned = 1; alert(1)</script>", '<img src=x onerror="window.__pwned = 1; alert(2)">')


@pytest.fixture(scope="module")
def served(request, tmp_path_factory) -> Iterator[tuple[str, CommunityAtlas]]:
    """A private copy of the seeded SQLite atlas with accounts, served by uvicorn in a thread."""
    from latentpedia.web import create_app

    with community_atlas("sqlite", request, tmp_path_factory) as catlas, serve(create_app(catlas.url, private=False)) as base:
        yield base, catlas


def test_log_in_vote_comment_make_a_list_log_out(served, browser):
    base, catlas = served
    feature = f"/{catlas.model}/{SOURCE}/7"
    user = Session(browser, base)
    user.goto(feature)
    assert user.page.locator("#login").is_visible() and user.page.locator("#explain-form").count() == 0
    user.login("alice")
    user.goto(feature)
    user.submit("#explain-form", text="fires on the word 'def'")
    assert "fires on the word 'def'" in user.page.inner_text("#explanations")
    with user.page.expect_navigation():
        user.page.click("#explanations .vote.up")
    assert user.page.inner_text("#explanations .vote-score") == "1"
    assert user.page.locator("#explanations .vote.up.on").count() == 1
    user.submit("#comment-form", text="seen in docstrings too")
    assert "seen in docstrings too" in user.page.inner_text("#comments")
    user.submit("#new-list-form", name="python latents", description="things about Python")
    user.submit("#add-to-list form.add-to-list", note="the def one")
    assert "remove from list" in user.page.inner_text("#add-to-list")
    user.page.click("#add-to-list a")
    user.page.wait_for_selector("#list-name")
    assert user.page.inner_text("#list-name") == "python latents" and "the def one" in user.page.inner_text("table.list-items")
    share = user.page.get_attribute("#share-link", "href")
    with user.page.expect_navigation():
        user.page.click("#logout")
    assert user.page.locator("#login").is_visible()
    user.goto("/account")
    assert "/login" in user.page.url  # signed out: the account page sends you to log in
    user.goto(share)  # the share link works without an account
    assert user.page.inner_text("#list-name") == "python latents"
    assert user.alerts == []
    user.close()


def test_script_payloads_in_every_user_field_never_run(served, browser):
    base, catlas = served
    feature = f"/{catlas.model}/{SOURCE}/11"
    admin = Session(browser, base)
    admin.login("root")
    for payload in PAYLOADS:
        admin.goto("/account")  # username: refused with a message that shows the payload as text
        admin.page.fill("#new-user-form [name=username]", payload)
        admin.page.fill("#new-user-form [name=password]", "long enough password")
        admin.page.click("#new-user-form button[type=submit]")
        error = admin.page.locator("#new-user-form .form-error")
        error.wait_for()
        admin.page.wait_for_function("() => document.querySelector('#new-user-form .form-error').textContent.length > 0")
        assert payload in error.inner_text()
        admin.goto(feature)
        admin.submit("#explain-form", text=payload)
        admin.submit("#comment-form", text=payload)
        admin.submit("#new-list-form", name=payload, description=payload)
    admin.submit("#add-to-list form.add-to-list", note=PAYLOADS[1])
    list_url = admin.page.get_attribute("#add-to-list a", "href")
    for path in (feature, "/user/root", list_url, "/account", f"/{catlas.model}/{SOURCE}?explained=true"):
        admin.goto(path)
        text = admin.page.inner_text("main")
        assert not admin.pwned(), path
        assert all(p in text for p in PAYLOADS) or path.startswith(f"/{catlas.model}/{SOURCE}?"), path
    assert admin.alerts == [] and not admin.pwned()
    admin.close()


def test_community_forms_work_without_javascript(served, browser):
    base, catlas = served
    feature = f"/{catlas.model}/{SOURCE}/13"
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.goto(base + feature)
    page.fill("#explain-form [name=text]", "explained with JavaScript off")
    page.click("#explain-form button[type=submit]")
    page.wait_for_url("**" + feature)
    assert "explained with JavaScript off" in page.inner_text("#explanations")
    page.click("#explanations .vote.up")
    page.wait_for_url("**" + feature)
    assert page.inner_text("#explanations .vote-score") == "1"
    page.fill("#comment-form [name=text]", "a comment with JavaScript off")
    page.click("#comment-form button[type=submit]")
    page.wait_for_url("**" + feature)
    assert "a comment with JavaScript off" in page.inner_text("#comments")
    page.fill("#comment-form [name=text]", "   ")
    page.click("#comment-form button[type=submit]")
    assert "the comment is empty" in page.inner_text("main")
    context.close()
