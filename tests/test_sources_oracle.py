"""SAELens as an oracle: the SAELens-format folders we write must encode the same through
`sae_lens.SAE.load_from_disk` as through `load_sae`. Skipped where sae_lens is not installed
(it lives in a separate venv: see the Makefile's oracle step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.sae_builders import CASES, Case, inputs

from latentpedia.sources import load_sae

sae_lens = pytest.importorskip("sae_lens")

ORACLE_CASES = [case for case in CASES if case.oracle]


@pytest.mark.parametrize("case", ORACLE_CASES, ids=[case.id for case in ORACLE_CASES])
def test_encode_matches_sae_lens(case: Case, tmp_path) -> None:
    folder = case.build(tmp_path)
    ours = load_sae(folder)
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    x = torch.from_numpy(inputs(case.ref.d_in))
    with torch.no_grad():
        expected = theirs.encode(x)
    np.testing.assert_allclose(ours.encode(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert ours.hook_name == theirs.cfg.metadata.hook_name


@pytest.mark.parametrize("case", ORACLE_CASES, ids=[case.id for case in ORACLE_CASES])
def test_decoder_matches_sae_lens(case: Case, tmp_path) -> None:
    """One unit of latent i decodes to the same vector (minus the bias) in both."""
    folder = case.build(tmp_path)
    ours = load_sae(folder)
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    if ours.weights.normalize_activations != "none":
        pytest.skip("SAELens decodes through input-dependent normalization")
    with torch.no_grad():
        units = torch.eye(ours.d_sae)
        rows = theirs.decode(units) - theirs.decode(torch.zeros(1, ours.d_sae))
    np.testing.assert_allclose(ours.decoder().numpy(), rows.numpy(), rtol=1e-5, atol=1e-5)
