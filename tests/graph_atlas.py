"""A community atlas (the seeded tiny atlas with accounts, on SQLite or PostgreSQL) plus one
quickly trained transcoder per layer of the tiny LLaMA, registered as transcoder sources."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from latentpedia.models import load_model
from latentpedia.store.api import Store
from latentpedia.train.transcoders import TranscoderConfig, TranscoderTrainer
from tests.community_fixtures import CommunityAtlas, community_atlas

WIDTH, K = 64, 4


def add_transcoders(url: str, model_id: str, folder) -> list[str]:
    """Train a transcoder per layer (a few hundred tokens) and add them as sources; their names."""
    store = Store.open(url)
    try:
        model = load_model(store.get_model(model_id).spec["path"])
        g = torch.Generator().manual_seed(0)
        windows = torch.randint(1, model.vocab_size, (16, 33), generator=g)
        windows[:, 0] = model.bos_id
        config = TranscoderConfig(out_dir=folder, model_id=model_id, width=WIDTH, k=K, n_tokens=2048, lr=1e-2, progress=False)
        results = TranscoderTrainer(model, windows, config, log=lambda *_: None).run()
        for r in results:
            hook = f"blocks.{r['layer']}.ln2.hook_normalized"
            store.add_source(model_id, r["name"], "transcoder", hook, r["layer"], model.d_model, WIDTH,
                             format="saelens", path=str(r["path"]))
        return [r["name"] for r in results]
    finally:
        store.close()


@contextmanager
def graph_atlas(request, tmp_path_factory, backend: str = "sqlite") -> Iterator[tuple[CommunityAtlas, list[str]]]:
    with community_atlas(backend, request, tmp_path_factory) as community:
        names = add_transcoders(community.url, community.model, tmp_path_factory.mktemp("transcoders"))
        yield community, names
