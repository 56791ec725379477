"""The feature page's HTML with its examples and panels cached per latent and build
(web/featurehtml.py), on SQLite and PostgreSQL: the token spans made from the stored examples are
the highlighter's, span for span; a cached page shows new explanations, votes and comments at
once, escaped, and each viewer's own header, votes and CSRF token; a rebuild invalidates it;
the cache is bounded."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentpedia.engine.tokens import TokenText
from latentpedia.web.featurehtml import FeatureHtml, example_spans, vocab_token, window_spans
from latentpedia.web.highlight import token_spans
from latentpedia.web.pages import feature_page_data
from latentpedia.web.pages.feature import _activation, _dense_values
from latentpedia.web.pages.feature_reader import FeatureReader, StoredExample, WindowTokens
from latentpedia.web.render import make_templates
from tests.community_fixtures import client, store  # noqa: F401  (module fixtures)
from tests.community_fixtures import PASSWORD
from tests.test_web_featurejson import _rebuilt_results
from tests.web_atlas import PAYLOAD

EXAMPLE_DIV = '<div class="example" data-kind='


def _reference_spans(example: StoredExample, tokens: list[str], scale: float | None) -> str:
    """The highlighter's spans of `example` over a window of `tokens` (the page's own path)."""
    window = WindowTokens(list(range(len(tokens))), tokens)
    values = _dense_values([example], [len(tokens)])[0]
    return str(token_spans(_activation(example, window, values, scale, {"modelId": "m", "layer": "s", "source": "s", "index": "0"}), scale))


def test_spans_from_stored_examples_are_the_highlighters_on_every_latent(catlas, store):
    text, reader = TokenText(store.get_vocab(catlas.model)), FeatureReader()
    checked = 0
    for source in catlas.atlas.sources:
        for index in range(store.get_source(catlas.model, source).d_sae):
            page = feature_page_data(store, catlas.model, source, index, text)
            inputs = reader.read(store, catlas.model, source, index, text)
            for example, activation in zip(inputs.examples, page.activations, strict=True):
                spans = example_spans(example, window_spans(inputs.windows[example.window].tokens), page.max_act)
                assert spans == str(token_spans(activation, page.max_act)), (source, index, example)
                checked += 1
    assert checked > 1000


@pytest.mark.parametrize("peak", [0, 1, 3, 13, 20, 27, 28, 40, -5])
def test_spans_at_the_edges_are_the_highlighters(peak):
    """Peaks at and past both ends, a zero and a negative zero, a negative value, a position past
    the window, a repeated position, no scale; tokens needing escapes and newlines."""
    tokens = ["<bos>", " a", "<b>", "&amp;", "x\ny", "\t", '"q"', *(f" t{i}" for i in range(21))]  # 28 tokens
    positions = [1, 2, 3, 5, 5, 9, 13, 27, 30]
    values = np.array([0.5, 0.0, -0.0, -1.25, 2.0, 3.5, 7.0, 1e-3, 9.0], dtype=np.float16)
    example = StoredExample(1, 2, 0, 7.0, peak, positions, values)
    for scale in (7.0, 2.5, None, 0.0):
        assert str(example_spans(example, window_spans(tokens), scale)) == _reference_spans(example, tokens, scale), scale
    assert "<b>" not in str(example_spans(example, window_spans(tokens), 7.0))


# the logit tables' token cell as the page's Jinja macro made it before it moved to Python
TOKEN_MACRO = (
    """{% macro tok(s) %}<span class="tokv" title='{{ s|tojson }}'>{% if s == "" %}<span class="ws">∅</span>{% else %}"""
    """{% for ch in s %}{% if ch == " " %}<span class="ws">␣</span>{% elif ch == "\\n" %}<span class="ws">↵</span>"""
    """{% elif ch == "\\t" %}<span class="ws">⇥</span>{% elif ch == "\\r" %}<span class="ws">␍</span>{% else %}{{ ch }}{% endif %}"""
    """{% endfor %}{% endif %}</span>{% endmacro %}"""
)


@pytest.mark.parametrize("token", ["", " the", "<script>'x\"&", "a\nb\tc\rd", "é ü", PAYLOAD, "\u2028"])
def test_vocab_token_cells_are_the_macros(token):
    macro = make_templates().env.from_string(TOKEN_MACRO).module.tok
    assert str(vocab_token(token)) == str(macro(token))


def test_page_holds_every_example_as_the_highlighter_renders_it(client, catlas, store):
    text = TokenText(store.get_vocab(catlas.model))
    for source, index in ((catlas.atlas.sources[0], 0), (catlas.atlas.sources[1], 5), catlas.atlas.payload_feature):
        page = feature_page_data(store, catlas.model, source, index, text)
        for _ in range(2):  # built, then from the cache
            html = client.get(f"/{catlas.model}/{source}/{index}").text
            assert html.count(EXAMPLE_DIV) == len(page.activations) > 0
            assert all(str(token_spans(a, page.max_act)) in html for a in page.activations)
            assert f"max activation {page.max_act:.3g}" in html and "activation histogram" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and PAYLOAD not in html  # the corpus payload, escaped


def _login(app_client: TestClient, username: str) -> str:
    response = app_client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def test_cached_page_shows_new_explanations_votes_and_comments_escaped(client, catlas, store):
    source = store.get_source(catlas.model, catlas.atlas.sources[0])
    path = f"/{catlas.model}/{source.name}/7"
    before = client.get(path).text
    assert "No explanation yet" in before and "no comments yet" in before
    cache = client.app.state.feature_html
    cached = len(cache.static._items)
    alice, bob = store.get_user("alice"), store.get_user("bob")
    explanation = store.add_explanation(source.id, 7, "fires on <b>code</b>", "manual", author_id=alice.id)
    store.vote(bob.id, explanation, 1)
    store.add_comment(source.id, 7, alice.id, "nice <i>one</i>")
    after = client.get(path).text
    assert 'id="best-explanation">fires on &lt;b&gt;code&lt;/b&gt;</div>' in after and "<b>code</b>" not in after
    assert '<span class="vote-score">1</span>' in after
    assert "nice &lt;i&gt;one&lt;/i&gt;" in after and "<i>one</i>" not in after and "no comments yet" not in after
    assert len(cache.static._items) == cached  # the examples came from the cache
    assert _examples(after) == _examples(before)

    session = TestClient(client.app)
    csrf = _login(session, "bob")
    mine = session.get(path).text
    assert f'name="csrf-token" content="{csrf}"' in mine and f'name="csrf_token" value="{csrf}"' in mine
    assert 'class="vote up on"' in mine and 'id="me" href="/user/bob"' in mine and 'id="comment-form"' in mine
    store.vote(bob.id, explanation, -1)
    assert 'class="vote down on"' in session.get(path).text and '<span class="vote-score">-1</span>' in client.get(path).text
    anonymous = client.get(path).text
    assert csrf not in anonymous and 'id="login"' in anonymous and 'class="vote up' not in anonymous
    assert _examples(mine) == _examples(anonymous) == _examples(before)


def _examples(html: str) -> list[str]:
    return re.findall(r'<div class="example" data-kind=.*?</div>', html, flags=re.S)


def test_embed_shows_the_cached_examples_without_community_parts(client, catlas):
    path = f"/{catlas.model}/{catlas.atlas.sources[1]}/3"
    page, embed = client.get(path).text, client.get(path + "?embed=true")
    assert embed.headers["content-security-policy"] == "frame-ancestors *"
    assert _examples(embed.text) == _examples(page) and len(_examples(page)) > 0
    assert 'id="explanations"' in page and 'id="explanations"' not in embed.text and 'id="header-search"' not in embed.text


def test_unknown_latents_are_404_pages(client, catlas):
    for path in (f"/{catlas.model}/{catlas.atlas.sources[0]}/100000", f"/{catlas.model}/9-mlp/0", "/nope/1-mlp/0"):
        response = client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 404 and "text/html" in response.headers["content-type"], path


def test_cache_is_bounded_and_keeps_what_it_can(catlas, store):
    text, env = TokenText(store.get_vocab(catlas.model)), make_templates().env
    small = FeatureHtml(FeatureReader(), max_bytes=1_000_000)
    for index in range(30):
        small.page(store, text, env, catlas.model, catlas.atlas.sources[0], index)
    assert small.static.size <= 1_000_000 and 1 < len(small.static._items) < 30
    assert small.windows.size <= 250_000


def test_rebuilding_the_source_invalidates_the_cached_page(client, catlas, store):  # last: it rebuilds a source
    source = store.get_source(catlas.model, catlas.atlas.sources[1])
    path = f"/{catlas.model}/{source.name}/4"
    before = client.get(path).text
    store.write_source_results(source.id, _rebuilt_results(source.d_sae, store.get_corpus(source.corpus_id).n_windows))
    after = client.get(path).text
    assert after != before and "max activation 5 " in after and len(_examples(after)) == 1
    text = TokenText(store.get_vocab(catlas.model))
    page = feature_page_data(store, catlas.model, source.name, 4, text)
    assert str(token_spans(page.activations[0], page.max_act)) in after
