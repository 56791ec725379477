"""The explainer, scorer and experiment registries, and everything generated from them: the
implementations agree with their entries, the CLI's choices and help, the API's enums, the
/experiments page's list, the docs tables; the web's scoring runs torch on the live worker only.
Web parts on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from latentpedia.cli import app as cli_app
from latentpedia.cli import docs
from latentpedia.errors import LatentpediaError
from latentpedia.experiments.registry import EXPERIMENTS
from latentpedia.interp import registry
from latentpedia.interp.data import AtlasText
from latentpedia.interp.registry import EXPLAINERS, SCORERS, VARIANT_NAMES, ScorerContext
from latentpedia.web import create_app
from latentpedia.web.live import LiveConfig
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS

SOURCE = "1-mlp"
RUN = CliRunner()


@pytest.fixture(scope="module", params=BACKENDS)
def catlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENTPEDIA_HOME", str(tmp_path_factory.mktemp("registries-home")))
    with community_atlas(request.param, request, tmp_path_factory) as found:
        yield found
    mp.undo()


@pytest.fixture(scope="module")
def client(catlas) -> Iterator[TestClient]:
    with TestClient(create_app(catlas.url, private=False)) as test_client:
        yield test_client


# ---------------------------------------------------------------- the registries themselves


def test_entries_are_complete_and_stored_names_unique() -> None:
    methods = [v.method for kind in EXPLAINERS.values() for v in kind.all_stored()]
    assert len(methods) == len(set(methods))
    for kind in [*EXPLAINERS.values(), *SCORERS.values()]:
        assert kind.name and kind.description and "\n" not in kind.description
    assert registry.LLM_SCORERS == {"simulation", "detection", "fuzzing"}
    assert set(VARIANT_NAMES) == set(registry.LLMExplainer.variants)


def test_llm_prompts_exist_for_exactly_the_registered_variants() -> None:
    from latentpedia.interp.llm.explain import PROMPTS, VARIANTS

    assert set(PROMPTS) == set(VARIANTS) == set(VARIANT_NAMES)
    assert VARIANTS == {v.name: v.version for v in registry.LLMExplainer().all_stored()}


class _Backend:
    """Stands in for an LLM client: building a scorer must not call it."""

    model = "judge-model"

    def __getattr__(self, name):
        raise AssertionError(f"the backend was used while building a scorer ({name})")


@pytest.mark.parametrize("name", list(SCORERS))
def test_each_scorer_builds_with_its_registered_name_and_version(catlas, name) -> None:
    from latentpedia.store.api import Store

    store = Store.open(catlas.url)
    try:
        source = store.get_source(catlas.model, SOURCE)
        scorer = SCORERS[name].build(ScorerContext(AtlasText(store, source.id), backend=_Backend()))
    finally:
        store.close()
    assert (scorer.name, scorer.version) == (name, SCORERS[name].version)
    assert callable(scorer.score)


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(LatentpediaError, match="unknown explainer 'astrology'; use one of offline, llm"):
        registry.explainer("astrology")
    with pytest.raises(LatentpediaError, match="unknown scorer 'vibes'; use some of embedding, simulation"):
        registry.parse_scorers("embedding, vibes")
    with pytest.raises(LatentpediaError, match="unknown prompt variant 'haiku'.*examples, tokact"):
        EXPLAINERS["llm"].stored_as("haiku")
    assert registry.parse_scorers(" embedding,,detection , embedding") == ["embedding", "detection"]
    assert registry.needs_llm("offline", ["embedding"]) is False
    assert registry.needs_llm("offline", ["fuzzing"]) is True and registry.needs_llm("llm", []) is True


# ---------------------------------------------------------------- generated: CLI, API, docs


def test_explain_help_lists_every_name_and_unknown_names_exit_2(catlas) -> None:
    help_text = " ".join(RUN.invoke(cli_app, ["explain", "--help"], terminal_width=200).output.split())
    for name in [*EXPLAINERS, *SCORERS, *VARIANT_NAMES]:
        assert name in help_text, name
    for args, needle in ((["--explainer", "astrology"], "unknown explainer 'astrology'"),
                         (["--scorer", "embedding,vibes"], "unknown scorer 'vibes'"),
                         (["--explainer", "llm", "--variant", "haiku"], "unknown prompt variant 'haiku'")):  # fmt: skip
        result = RUN.invoke(cli_app, ["explain", "--db", catlas.url, *args])
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1 and needle in errors[0], result.output


def test_experiment_commands_take_name_and_help_from_the_registry() -> None:
    commands = {c.name: c for c in cli_app.registered_commands}
    for experiment in EXPERIMENTS.values():
        assert commands[experiment.cli_command].help == experiment.description


def test_openapi_enums_are_the_registries(client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    generate, score = schemas["GenerateIn"]["properties"], schemas["ScoreIn"]["properties"]
    assert generate["explainer"]["enum"] == list(EXPLAINERS)
    assert generate["variant"]["enum"] == list(VARIANT_NAMES)
    assert generate["scorers"]["items"]["enum"] == list(SCORERS)
    assert score["scorers"]["items"]["enum"] == list(SCORERS)
    for experiment in EXPERIMENTS.values():
        method, path = experiment.api_route.split(" ", 1)
        assert method.lower() in spec["paths"][path], experiment.api_route


def test_every_experiment_route_is_registered(client) -> None:
    from latentpedia.web.routers.experiments import router

    registered = {e.api_route for e in EXPERIMENTS.values()}
    for route in router.routes:
        if route.path.startswith("/api/") and "POST" in route.methods and not route.path.endswith("/stream"):
            assert f"POST {route.path}" in registered, route.path


def test_experiments_page_lists_the_registry(client) -> None:
    listed = client.get("/api/experiments").json()["experiments"]
    assert [e["name"] for e in listed] == list(EXPERIMENTS)
    assert listed[0]["api_route"] == EXPERIMENTS[listed[0]["name"]].api_route
    html = client.get("/experiments", headers={"accept": "text/html"}).text
    for experiment in EXPERIMENTS.values():
        assert f"latentpedia {experiment.cli_command}</code>" in html


def test_docs_tables_are_up_to_date() -> None:
    for path, (current, fresh) in docs.generated_pages().items():
        assert current == fresh, f"{path.name} is out of date: run python -m latentpedia.cli.docs"
    page = (docs.DOCS / "interp.md").read_text()
    for name in [*EXPLAINERS, *SCORERS, *VARIANT_NAMES]:
        assert f"`{name}`" in page


def test_splice_replaces_only_between_markers() -> None:
    text = "intro\n<!-- generated: t -->\nold\n<!-- end generated: t -->\noutro\n"
    assert docs.splice(text, "t", "new") == "intro\n<!-- generated: t -->\nnew\n<!-- end generated: t -->\noutro\n"
    with pytest.raises(ValueError, match="no '<!-- generated: other -->'"):
        docs.splice(text, "other", "new")


# ---------------------------------------------------------------- the web runs torch on the worker


@pytest.fixture()
def embed_threads(monkeypatch) -> list[str]:
    """Names of the threads the embedding model runs on during the test."""
    from latentpedia.interp.embedding import Embedder

    seen: list[str] = []
    original = Embedder.__call__

    def spy(self, texts):
        seen.append(threading.current_thread().name)
        return original(self, texts)

    monkeypatch.setattr(Embedder, "__call__", spy)
    return seen


def test_web_scoring_runs_the_embedder_on_the_live_worker(client, catlas, embed_threads) -> None:
    as_bob = catlas.key("bob")
    made = client.post("/api/explanation/new", json={"modelId": catlas.model, "layer": SOURCE, "index": 5,
                                                     "text": "digits in a list"}, headers=as_bob)  # fmt: skip
    scored = client.post("/api/explanation/score", json={"explanation_id": made.json()["id"]}, headers=as_bob)
    assert scored.status_code == 200, scored.text
    generated = client.post("/api/explanation/generate", json={"modelId": catlas.model, "layer": SOURCE, "index": 6},
                            headers=as_bob)  # fmt: skip
    assert generated.status_code == 200, generated.text
    assert embed_threads and set(embed_threads) == {"latentpedia-live"}


def test_a_busy_worker_is_503_and_stores_no_score(catlas, embed_threads) -> None:
    as_bob = catlas.key("bob")
    with TestClient(create_app(catlas.url, private=False, live_config=LiveConfig(max_queue=0))) as busy:
        made = busy.post("/api/explanation/new", json={"modelId": catlas.model, "layer": SOURCE, "index": 7,
                                                       "text": "closing brackets"}, headers=as_bob)  # fmt: skip
        eid = made.json()["id"]
        refused = busy.post("/api/explanation/score", json={"explanation_id": eid}, headers=as_bob)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        page = busy.get(f"/api/feature/{catlas.model}/{SOURCE}/7").json()
    assert [e["scores"] for e in page["explanations"] if e["id"] == eid] == [[]]
    assert embed_threads == []
