"""The game's default campaign on the default atlas's kind of data (issue 12), SQLite and
PostgreSQL (slow: SmolLM2): the layer-8 neurons of SmolLM2 over the default corpus, built the way
`demo` builds its first slice (same model, corpus, source and window; a smaller token budget, no
explanations yet), then `ensure_default_campaign` and a whole turn of a player: puzzle, submit
(the machine's explanation made on the spot), the next puzzle, the daily puzzle, progress."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from latentpedia.dashboards import defaults
from latentpedia.dashboards.pipeline import BuildRequest, build
from latentpedia.interp.embedding import shared_embedder
from latentpedia.interp.game.play import Game
from latentpedia.store.api import Store
from latentpedia.store.game import DEFAULT_CAMPAIGN, ensure_default_campaign

pytestmark = pytest.mark.slow
TOKENS = 8192  # 64 windows of 128 tokens


@pytest.fixture(scope="module")
def demo_store(module_db_url: str) -> Iterator[Store]:
    store = Store.open(module_db_url)
    source = DEFAULT_CAMPAIGN[2]
    build(store, BuildRequest(model=defaults.MODEL, sources=[source], n_tokens=TOKENS, progress=False, maps=False))
    try:
        yield store
    finally:
        store.close()


def test_default_campaign_is_made_once_and_playable(demo_store: Store) -> None:
    slug, title, source = DEFAULT_CAMPAIGN
    campaign = ensure_default_campaign(demo_store, defaults.MODEL)
    assert campaign is not None and (campaign.slug, campaign.title, campaign.source) == (slug, title, source)
    assert campaign.model_id == defaults.MODEL and campaign.order == "unexplained" and campaign.active(campaign.created_at)
    assert ensure_default_campaign(demo_store, defaults.MODEL).id == campaign.id  # a second demo makes no second one

    game = Game(demo_store, shared_embedder())
    player = demo_store.add_user("first-player", "a long enough password")
    candidates = game.candidates(campaign)
    assert len(candidates) > 100  # most of the 1,536 neurons fire somewhere in the slice
    puzzle = game.puzzle(player, slug)
    assert not puzzle["done"] and puzzle["index"] == candidates[0]
    assert puzzle["clues"] and all(any(v > 0 for v in c["values"]) for c in puzzle["clues"])
    assert puzzle["modelId"] == defaults.MODEL and puzzle["layer"] == source

    playable = next(i for i in candidates if game.reference(campaign.source_id, i)["machine_score"] is not None)
    reference = game.reference(campaign.source_id, playable)
    assert reference["holdout"]["positives"] and reference["holdout"]["negatives"]
    assert reference["machine_text"] and 0.5 < reference["baseline_score"] < 1.0
    result = game.submit(player, slug, campaign.source_id, playable, "closing brackets and parentheses in code")
    assert result["action"] == "explain" and result["score"] is not None and result["baseline"] == reference["baseline_score"]
    assert result["machine"]["text"] == reference["machine_text"] and result["best"] is not None
    stored = demo_store.get_explanation(result["explanation_id"])
    assert stored.method == "game" and stored.source == source  # an ordinary explanation of the atlas

    game.skip(player, slug, campaign.source_id, puzzle["index"])
    assert game.puzzle(player, slug)["index"] not in (puzzle["index"], playable)
    daily = game.puzzle(None, daily=True)
    assert daily["campaign"] == slug and daily["index"] in candidates and daily["clues"]
    progress = game.progress(campaign)
    assert progress["latents"] == len(candidates) and f"of {source} has an explanation beating its baseline" in progress["label"]
    assert game.player(player)["plays"] == 2
