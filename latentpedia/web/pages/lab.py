"""Page data of the lab: the toy model of superposition (`/toy`) and the SAE benchmark
comparison (`/benchmarks`), plus the charts both draw (inline SVG, web/labsvg.py)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from markupsafe import Markup

from latentpedia.store.api import Store
from latentpedia.web.lab_schemas import WEB_SWEEP, BenchmarkRow, BenchmarksPage, ToyInstanceOut, ToyRequest, ToyResult
from latentpedia.web.labsvg import Axis, Series, bars_svg, heatmap_svg, scatter_svg
from latentpedia.web.pages.common import source_url

CACHED_TOY_RESULTS = 8
_toy_cache: OrderedDict[str, ToyResult] = OrderedDict()
_toy_lock = threading.Lock()


def toy_sparsities(chosen: float) -> tuple[float, ...]:
    """The web sweep: WEB_SWEEP sparsities from dense to 1/(1-S) = 300, plus the chosen one."""
    from latentpedia.lab.toy import default_sparsities

    return tuple(sorted({round(s, 6) for s in default_sparsities(WEB_SWEEP)} | {round(chosen, 6)}))


def train_toy_result(request: ToyRequest) -> ToyResult:
    """Train the sweep of `request` (torch: call on the worker thread); cached per request."""
    from latentpedia.lab.toy import STICKY_FRACTIONS, ToyConfig, config_dict, describe, interference, superposition, train_toy

    key = request.model_dump_json()
    with _toy_lock:
        if key in _toy_cache:
            _toy_cache.move_to_end(key)
            return _toy_cache[key]
    started = time.perf_counter()
    sparsities = toy_sparsities(request.sparsity)
    config = ToyConfig(n_features=request.n_features, n_hidden=request.n_hidden, importance_decay=request.importance_decay,
                       sparsities=sparsities, steps=request.steps, batch_size=256, lr=4e-3, seed=request.seed)
    models = train_toy(config)
    selected = sparsities.index(round(request.sparsity, 6))
    W = models.W[selected]
    result = ToyResult(
        config=config_dict(config), selected=selected, instances=[ToyInstanceOut(**vars(i)) for i in describe(models)],
        wtw=[[round(v, 4) for v in row] for row in interference(W).tolist()],
        superposition=[round(v, 4) for v in superposition(W).tolist()],
        sticky_fractions={str(f): name for f, name in STICKY_FRACTIONS.items()}, seconds=round(time.perf_counter() - started, 2),
    )  # fmt: skip
    with _toy_lock:
        _toy_cache[key] = result
        while len(_toy_cache) > CACHED_TOY_RESULTS:
            _toy_cache.popitem(last=False)
    return result


def toy_charts(result: ToyResult) -> dict[str, Markup]:
    """The staircase (D* and every D_i against 1/(1-S)), WᵀW and the norm bars of the selected model."""
    from fractions import Fraction

    marks = [(float(Fraction(f)), f) for f in result.sticky_fractions]
    dots = Series([(i.density_inverse, d, f"S={i.sparsity:.4f}, D_i={d:.3f}") for i in result.instances
                   for d, norm in zip(i.dimensionality, i.feature_norms, strict=True) if norm >= 0.5],
                  colour="#e8743b", radius=2.0)  # fmt: skip
    line = Series([(i.density_inverse, i.dims_per_feature, f"D*={i.dims_per_feature:.3f}") for i in result.instances], colour="#222", line=True)
    staircase = scatter_svg([dots, line], Axis("1 / (1 - S)", log=True), Axis("dimensions per feature", lo=0, hi=1.1, marks=marks),
                            width=560, height=300, label="dimensions per feature against sparsity")
    selected = result.instances[result.selected]
    shades = [min(1.0, s) for s in result.superposition]
    return {
        "staircase": staircase,
        "wtw": heatmap_svg(result.wtw, label="W transpose W"),
        "norms": bars_svg(selected.feature_norms, shades, label="feature norms"),
    }


# ---------------------------------------------------------------------------- benchmarks


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def benchmark_row(record) -> BenchmarkRow:
    """A source record's quality and `bench` figures as one comparable row."""
    meta = record.meta or {}
    quality = meta.get("quality") or {}
    bench = quality.get("bench") or {}
    figures = {name: _number(quality.get(name)) for name in ("l0", "explained_variance", "ce_loss_recovered", "dead_fraction")}
    names = ("absorption", "absorption_miss_rate", "sparse_probing_top1", "sparse_probing_top5", "sparse_probing_hook",
             "autointerp_score", "autointerp_beats_baseline")
    figures |= {name: _number(bench.get(name)) for name in names}
    probing = {task: {k: float(v) for k, v in values.items() if _number(v) is not None}
               for task, values in (bench.get("sparse_probing") or {}).items()}
    return BenchmarkRow(model=record.model_id, source=record.name, url=source_url(record.model_id, record.name),
                        architecture=meta.get("architecture"), width=record.d_sae, layer=record.layer, sparse_probing=probing,
                        bench_seconds={k: float(v) for k, v in (bench.get("bench_seconds") or {}).items()}, **figures)


def benchmarks_page_data(store: Store) -> BenchmarksPage:
    """Every SAE source of the atlas with its figures, for `/benchmarks` and `/api/benchmarks`."""
    rows = [benchmark_row(r) for r in store.list_sources() if r.kind != "mlp"]
    measured = sum(1 for r in rows if r.bench_seconds)
    return BenchmarksPage(rows=rows, measured=measured)


BENCHMARK_PLOTS = (
    ("l0", "L0", "ce_loss_recovered", "CE-loss recovered", True),
    ("width", "width (latents)", "absorption", "absorption (first letter)", True),
    ("l0", "L0", "sparse_probing_top1", "sparse probing, 1 latent", True),
    ("l0", "L0", "autointerp_score", "auto-interp score", True),
)


def benchmark_charts(page: BenchmarksPage) -> list[Markup]:
    """One scatter plot per BENCHMARK_PLOTS pair over the SAEs that have both figures."""
    charts = []
    for x_name, x_label, y_name, y_label, log_x in BENCHMARK_PLOTS:
        points = [(getattr(r, x_name), getattr(r, y_name), f"{r.model}/{r.source}") for r in page.rows
                  if getattr(r, x_name) is not None and getattr(r, y_name) is not None and getattr(r, x_name) > 0]
        charts.append(scatter_svg([Series(points, radius=4)], Axis(x_label, log=log_x), Axis(y_label),
                                  label=f"{y_label} against {x_label}"))
    return charts
