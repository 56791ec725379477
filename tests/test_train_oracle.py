"""SAELens as an oracle for the SAEs we train: `sae_lens.SAE.load_from_disk` must load every
exported folder and encode and decode exactly as `load_sae` does. Skipped where sae_lens is not
installed (it lives in a separate venv: see the Makefile's oracle step)."""

from __future__ import annotations

import pytest
import torch
from tests.train_synthetic import HOOK, planted_activations, planted_directions, write_cache

from latentpedia.sources import load_sae
from latentpedia.train.config import TrainConfig
from latentpedia.train.evals import reconstruct
from latentpedia.train.saes import TRAINABLE
from latentpedia.train.trainer import Trainer

sae_lens = pytest.importorskip("sae_lens")


@pytest.mark.parametrize("architecture", sorted(TRAINABLE))
def test_sae_lens_loads_what_we_train(architecture, tmp_path):
    directions = planted_directions(d_in=16, n_features=32)
    cache = write_cache(tmp_path / "acts", {HOOK: planted_activations(2048, directions)})
    config = TrainConfig(activations=cache, out_dir=tmp_path / "out", hooks=[HOOK], widths=[64], architecture=architecture,
                         k=4, n_tokens=1024, batch_size=128, buffer_tokens=1024, lr=3e-3, progress=False)
    [result] = Trainer(config, log=lambda *_: None).run()
    ours = load_sae(result["path"])
    theirs = sae_lens.SAE.load_from_disk(str(result["path"]), device="cpu")
    x = planted_activations(200, directions, seed=4)
    with torch.no_grad():
        their_acts = theirs.encode(x)
        their_recon = theirs.decode(their_acts)
    acts, recon = reconstruct(ours, x)
    torch.testing.assert_close(acts, their_acts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(recon, their_recon, atol=1e-5, rtol=1e-5)
    assert theirs.cfg.metadata.hook_name == HOOK == ours.hook_name
