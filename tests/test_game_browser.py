"""A whole game session in Chromium, on SQLite and PostgreSQL: sign up with an invite, the
tutorial (remembered), three puzzles (submit, vote, skip), points and the leaderboard change; a
second player's near-duplicate becomes a vote; a reported explanation disappears after
moderation. Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from latentpedia.store.api import Store
from latentpedia.store.game import GameStore
from tests.browser import browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)
from tests.community_fixtures import PASSWORD
from tests.conftest import BACKENDS
from tests.test_game import GameAtlas, game_atlas

pytestmark = needs_chromium


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[str, GameAtlas]]:
    from latentpedia.web import create_app

    with game_atlas(request.param, request, tmp_path_factory) as gatlas:
        app = create_app(gatlas.url)
        app.state.signup = "invite"
        with serve(app) as base:
            yield base, gatlas


def _invite(url: str) -> str:
    store = Store.open(url)
    try:
        return GameStore(store).new_invite(None)
    finally:
        store.close()


class Player:
    def __init__(self, browser, base: str):
        self.base, self.context = base, browser.new_context()
        self.page = self.context.new_page()
        self.page.on("dialog", lambda d: d.accept("spam, not an explanation") if d.type == "prompt" else d.accept())

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")

    def sign_up(self, name: str, code: str) -> None:
        self.goto(f"/signup?invite={code}")
        self.page.fill("input[name=username]", name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("#signup-form button[type=submit]")
        self.page.wait_for_url(re.compile(r".*/play$"))

    def login(self, name: str) -> None:
        self.goto("/login?next=/play/admin")
        self.page.fill("input[name=username]", name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#logout")

    def board(self) -> dict[str, int]:
        self.goto("/play")
        rows = self.page.locator("#board tr").all()[1:]
        found = {}
        for row in rows:
            cells = row.locator("td").all_inner_texts()
            if len(cells) == 5:
                found[cells[1]] = int(cells[2])
        return found

    def result(self) -> str:
        self.page.wait_for_selector("#result:not([hidden])")
        return self.page.inner_text("#result")


def test_a_whole_game_session(served, browser) -> None:
    base, gatlas = served
    concept = gatlas.planted.texts[0].strip()
    pat = Player(browser, base)
    pat.sign_up("pat", _invite(gatlas.url))
    assert "pat" not in pat.board()

    # the tutorial on the first puzzle, remembered once dismissed
    pat.goto("/play/c/planted")
    assert pat.page.is_visible("#tutorial")
    assert pat.page.is_hidden("#advanced")  # simple mode: no numbers
    pat.page.click("#tutorial-done")
    pat.page.wait_for_selector("#tutorial", state="hidden")
    pat.goto("/play/c/planted")
    assert pat.page.locator("#tutorial").count() == 0

    # puzzle 1: submit the true concept
    assert pat.page.get_attribute("#puzzle", "data-index") == "0"
    pat.page.fill("#guess", f"the word {concept}")
    pat.page.click("#submit-guess")
    text = pat.result()
    assert "random guess" in text and "points" in text
    points = int(pat.page.inner_text("#my-points"))
    assert points > 0
    pat.page.click("#next")
    pat.page.wait_for_load_state("load")

    # puzzle 2: vote for an existing explanation (the machine's)
    assert pat.page.get_attribute("#puzzle", "data-index") == "1"
    pat.page.click("#explanations button.vote")
    assert "Vote counted" in pat.result()
    pat.page.click("#next")
    pat.page.wait_for_load_state("load")

    # puzzle 3: skip
    assert pat.page.get_attribute("#puzzle", "data-index") == "2"
    with pat.page.expect_navigation():
        pat.page.click("#skip")
    pat.page.wait_for_load_state("load")
    assert pat.page.locator("h1").inner_text().startswith("You have played every latent")

    board = pat.board()  # the submit's points, plus the bonus of a vote for what is still the best
    assert board.get("pat") >= points and pat.page.inner_text("#my-points") == str(board["pat"])
    points = board["pat"]

    # a second player's near-duplicate becomes a vote for pat's explanation
    quinn = Player(browser, base)
    quinn.sign_up("quinn", _invite(gatlas.url))
    quinn.goto("/play/c/planted?index=0")
    quinn.page.click("#tutorial-done")
    quinn.page.fill("#guess", f"The word {concept.upper()}!")
    quinn.page.click("#submit-guess")
    assert "counts as your vote" in quinn.result()
    quinn.goto("/play/c/planted?index=0")
    mine = quinn.page.locator("#explanations li", has_text=f"the word {concept}")
    assert mine.locator(".votes").inner_text() == "1"

    # quinn reports it; the admin hides it; it is gone from the puzzle and pat's points with it
    mine.locator("button.report").click()
    quinn.page.wait_for_selector("#explanations button.report:has-text('reported')")
    admin = Player(browser, base)
    admin.login("root")
    admin.page.wait_for_selector("#reports")
    row = admin.page.locator("#reports tr", has_text=f"the word {concept}")
    row.locator("button.moderate[data-action=hide]").click()
    admin.page.wait_for_load_state("load")
    admin.page.wait_for_selector(f"#reports tr:has-text('the word {concept}') button[data-action=restore]")
    quinn.goto("/play/c/planted?index=0")
    assert quinn.page.locator("#explanations li", has_text=f"the word {concept}").count() == 0
    assert pat.board().get("pat", 0) < points
