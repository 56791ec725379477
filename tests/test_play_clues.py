"""The puzzle page's cached clue markup (web/pages/clues.py) is the markup the Jinja loop made:
escaped tokens, activation shading, value titles in advanced mode; a changed latent is re-rendered."""

from __future__ import annotations

from jinja2 import Environment

from latentpedia.web.pages import clues
from latentpedia.web.render import format_number

# the loop the template had before the cache (play_puzzle.html, clues in advanced mode)
LOOP = """{% for ex in examples %}<li class="clue">{% for t in ex.tokens %}{% set v = ex["values"][loop.index0] %}<span class="tok{% if v > 0 %} on{% endif %}"{% if v > 0 %} style="--a:{{ [v / max_act, 1.0]|min if max_act else 0 }}"{% endif %}{% if titles %} title="{{ v|num }}"{% endif %}>{{ t }}</span>{% endfor %}</li>
{% endfor %}"""

EXAMPLES = [
    {"tokens": ["<script>", " a&b", ' "q"', "\n", "é"], "values": [0.0, 2.5, 5.0, -1.0, 10.0]},
    {"tokens": ["x", "'y'"], "values": [0.25, 0.0]},
]


def _jinja(examples, max_act, titles):
    env = Environment(autoescape=True)
    env.filters["num"] = format_number
    return env.from_string(LOOP).render(examples=examples, max_act=max_act, titles=titles).strip()


def test_clue_markup_matches_the_template_loop():
    for max_act in (5.0, None, 0.0):
        for titles in (True, False):
            assert str(clues.clue_list(EXAMPLES, max_act, titles=titles)) == _jinja(EXAMPLES, max_act, titles)
    html = str(clues.clue_list(EXAMPLES, 5.0, titles=True))
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&amp;b" in html


def test_cached_clues_are_reused_until_the_latent_changes():
    key = ("clues", "m", "src", 7)
    first = clues.cached_clue_list(key, EXAMPLES, 5.0, titles=False)
    assert clues.cached_clue_list(key, EXAMPLES, 5.0, titles=False) is first
    changed = [{"tokens": ["new"], "values": [1.0]}]
    again = clues.cached_clue_list(key, changed, 5.0, titles=False)
    assert again is not first and "new" in again
    assert clues.cached_clue_list(key, changed, 5.0, titles=True) != again  # mode is part of the key
