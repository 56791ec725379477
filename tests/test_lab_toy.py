"""Toy models of superposition: the dimensionality formulas on known polytopes, and the
staircase of sticky fractions appearing in a trained sparsity sweep (the paper's finding)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from latentpedia.errors import InvalidInputError
from latentpedia.lab.toy import (
    STICKY_FRACTIONS,
    ToyConfig,
    default_sparsities,
    describe,
    dims_per_feature,
    feature_dimensionality,
    geometry_counts,
    nearest_fraction,
    superposition,
    train_toy,
)


def polygon(k: int) -> torch.Tensor:
    """k unit vectors evenly spaced on a circle, as W [2, k]."""
    angles = torch.arange(k) * 2 * math.pi / k
    return torch.stack([angles.cos(), angles.sin()])


def test_dimensionality_of_known_geometries():
    assert torch.allclose(feature_dimensionality(torch.eye(3)), torch.ones(3))  # dedicated dimensions
    assert torch.allclose(feature_dimensionality(torch.tensor([[1.0, -1.0]])), torch.full((2,), 0.5))  # digon
    assert torch.allclose(feature_dimensionality(polygon(3)), torch.full((3,), 2 / 3), atol=1e-6)  # triangle
    assert torch.allclose(feature_dimensionality(polygon(5)), torch.full((5,), 2 / 5), atol=1e-6)  # pentagon
    tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).T / math.sqrt(3)
    assert torch.allclose(feature_dimensionality(tetrahedron), torch.full((4,), 0.75), atol=1e-6)
    # a digon in dims 0 and a triangle in dims 1-2 do not interfere: each keeps its own fraction
    W = torch.zeros(3, 5)
    W[0, :2] = torch.tensor([1.0, -1.0])
    W[1:, 2:] = polygon(3)
    assert torch.allclose(feature_dimensionality(W), torch.tensor([0.5, 0.5, 2 / 3, 2 / 3, 2 / 3]), atol=1e-6)
    assert dims_per_feature(W) == pytest.approx(3 / 5)
    assert torch.allclose(superposition(W), torch.tensor([1.0, 1.0, 0.5, 0.5, 0.5]), atol=1e-6)
    counts = geometry_counts(W)
    assert counts["1/2"] == 2 and counts["2/3"] == 3 and counts["other"] == 0


def test_unrepresented_features_count_as_such():
    W = torch.zeros(2, 4)
    W[0, 0] = 1.0
    W[1, 1] = 0.1  # too small to count as represented
    assert feature_dimensionality(W)[2:].tolist() == [0.0, 0.0]
    assert geometry_counts(W) == {**{str(f): 0 for f in STICKY_FRACTIONS}, "1": 1, "other": 0, "not represented": 3}
    assert nearest_fraction(0.41) == Fraction(2, 5) and nearest_fraction(0.58) is None


def test_bad_configs_are_refused():
    for bad in (ToyConfig(n_features=10, n_hidden=10), ToyConfig(importance_decay=0), ToyConfig(sparsities=(1.0,)),
                ToyConfig(sparsities=()), ToyConfig(steps=0), ToyConfig(n_features=10_000)):
        with pytest.raises(InvalidInputError):
            train_toy(bad)
    with pytest.raises(InvalidInputError):
        default_sparsities(0)


def test_dense_features_get_dedicated_dimensions_by_importance():
    """At S = 0 the model keeps the m most important features orthogonal and drops the rest."""
    config = ToyConfig(n_features=20, n_hidden=5, importance_decay=0.8, sparsities=(0.0,), steps=800, lr=1e-2)
    (dense,) = describe(train_toy(config))
    norms = torch.tensor(dense.feature_norms)
    assert set(torch.topk(norms, 5).indices.tolist()) == set(range(5))
    assert norms[:5].min() > 0.9 and norms[5:].max() < 0.5, norms
    assert dense.dims_per_feature == pytest.approx(1.0, abs=0.1)


# The sweep of the staircase test: 30 features in 6 dimensions, uniform importance (the paper's
# geometry setting), at densities 1/(1-S) from dense to 4.5. Measured with seeds 0, 1 and 2:
# D* = 1.000 +- 0.003 dense; a digon plateau (every represented feature at D_i = 0.49-0.51,
# D* = 0.490-0.501) at 1/(1-S) = 2.5 and 3.2; then 5-13 features at 2/5 or 3/8 at 4 and 10-13 at
# 4.5, where none were on the plateau. Tolerances: a feature whose D_i is within 0.03 of a
# fraction counts as on it; within a plateau the measured spread is +-0.02 (finite training,
# slight interference between polytopes), and 0.03 stays under half the gap between 1/2 and 2/5
# (0.05). 2/5 and 3/8 are 0.025 apart, so they are tested together. 3/4 and 2/3 live in a narrow
# band near 1/(1-S) = 1.3 and need longer training than a test allows (`latentpedia toy` shows
# them); they are not asserted here.
STAIRCASE = ToyConfig(n_features=30, n_hidden=6, sparsities=tuple(1 - 1 / x for x in (1, 2, 2.5, 3.2, 4, 4.5)),
                      steps=3000, batch_size=256, lr=4e-3)


@pytest.fixture(scope="module")
def staircase():
    return describe(train_toy(STAIRCASE))


def _share_on(instance, fractions: set[str]) -> float:
    counts = instance.geometry
    represented = sum(v for k, v in counts.items() if k != "not represented")
    return sum(counts[f] for f in fractions) / max(represented, 1)


def test_dense_end_spends_one_dimension_per_feature(staircase):
    assert staircase[0].dims_per_feature == pytest.approx(1.0, abs=0.03)


def test_digon_plateau(staircase):
    """Two or more consecutive sparsities where D* sits at 1/2 and every represented feature
    is half of an antipodal pair."""
    on_half = [abs(i.dims_per_feature - 0.5) <= 0.03 and _share_on(i, {"1/2"}) == 1.0 for i in staircase]
    runs = "".join("x" if v else "." for v in on_half)
    assert "xx" in runs, [(round(i.density_inverse, 2), round(i.dims_per_feature, 3), i.geometry) for i in staircase]


def test_pentagon_and_antiprism_step_after_the_digons(staircase):
    """Past the digon plateau D* leaves 1/2 and features move onto 2/5 and 3/8 (from none)."""
    by_density = {round(i.density_inverse, 1): i for i in staircase}
    smaller = lambda i: i.geometry["2/5"] + i.geometry["3/8"]  # noqa: E731
    assert smaller(by_density[2.5]) == smaller(by_density[3.2]) == 0
    assert by_density[4.0].dims_per_feature < 0.47 and by_density[4.5].dims_per_feature < 0.42
    assert smaller(by_density[4.0]) >= 5 and smaller(by_density[4.5]) >= 8, [i.geometry for i in staircase]


def test_dims_per_feature_never_climbs_back(staircase):
    values = [i.dims_per_feature for i in staircase]
    assert all(b <= a + 0.02 for a, b in zip(values, values[1:], strict=False)), values


def test_toy_command(tmp_path):
    import json

    from typer.testing import CliRunner

    from latentpedia.cli import app

    out = tmp_path / "toy.json"
    result = CliRunner().invoke(app, ["toy", "-n", "8", "-m", "2", "-s", "0", "-s", "0.9", "--steps", "50", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [round(i["sparsity"], 2) for i in data["instances"]] == [0.0, 0.9] and len(data["instances"][0]["dimensionality"]) == 8
    bad = CliRunner().invoke(app, ["toy", "-n", "8", "-m", "8"])
    assert bad.exit_code == 2 and "n_hidden < n_features" in bad.output
