"""Latent maps: a 2-D UMAP of each source's decoder directions, with clusters.

A source's map places latents whose decoder directions point the same way (cosine) near each
other: MLP neurons by their output weights (down-projection columns), SAEs and transcoders by
their `W_dec` rows. It depends on the weights only, so it is computed once per source, after
the build's statistics (`ensure_maps`, called by `dashboards.pipeline.build`, so a build killed
after its pass computes the maps when resumed), or for an atlas built before by
`latentpedia build-maps`. A source whose map exists is skipped unless `redo`.

Clusters: k-means on the 2-D points (every latent gets one, sqrt(n / 20) clusters between 2
and 40), so colours on the map match what the eye sees. Fixed seeds: the same weights give
the same map. umap-learn (numba) is imported only when a map is computed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from latentpedia.dashboards.checkpoint import crash_point
from latentpedia.sources.base import Source
from latentpedia.store.api import Store

MIN_UMAP_POINTS = 8  # below this UMAP's graph is degenerate: a PCA of the directions instead


@dataclass(frozen=True)
class MapConfig:
    """UMAP and clustering settings (stored with each map in `meta["map"]`)."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int | None = 200  # None: umap's default (500 below 10k points, else 200)
    init: str = "pca"  # "pca" or "spectral" (umap's default): 6x slower here for the same quality (bench/maps.py)
    seed: int = 0
    max_clusters: int = 40


def unit_directions(decoder: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): cosine geometry for UMAP."""
    rows = np.asarray(decoder, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def n_clusters(n: int, config: MapConfig) -> int:
    return int(min(config.max_clusters, max(2, round(math.sqrt(n / 20))), n))


def embed(directions: np.ndarray, config: MapConfig = MapConfig()) -> np.ndarray:
    """[n, d] decoder directions -> [n, 2] float32 positions (UMAP, cosine, fixed seed)."""
    points = unit_directions(directions)
    n = len(points)
    if n < MIN_UMAP_POINTS:
        return _pca_2d(points)
    import umap  # lazy: numba compilation is paid only by whoever computes a map

    keep_compiled_code()
    reducer = umap.UMAP(n_components=2, n_neighbors=min(config.n_neighbors, n - 1), min_dist=config.min_dist,
                        metric="cosine", n_epochs=config.n_epochs, init=config.init, random_state=config.seed,
                        low_memory=True, n_jobs=1)  # fmt: skip
    return np.asarray(reducer.fit_transform(points), dtype=np.float32)


def keep_compiled_code() -> int:
    """Let numba keep umap's and pynndescent's compiled functions on disk (most are not declared
    `cache=True`), so a new process loads them instead of compiling them again: ~60% of a
    4,096-latent map's CPU time in a fresh process. Same machine code, so the same map (bench/RESULTS.md).
    Returns how many functions were switched (0 on later calls)."""
    import sys

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("umap.", "pynndescent.")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache) and obj.__module__ == name:
                try:
                    obj.enable_caching()
                except RuntimeError:  # numba found nowhere to write it: compile as before
                    continue
                switched += 1
    return switched


def _pca_2d(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = np.zeros((len(points), 2), np.float32)
    k = min(2, vt.shape[0])
    xy[:, :k] = centred @ vt[:k].T
    return xy


def cluster(xy: np.ndarray, config: MapConfig = MapConfig()) -> np.ndarray:
    """A cluster id per point: k-means on the 2-D map (fixed seed)."""
    n = len(xy)
    if n < 2:
        return np.zeros(n, np.int64)
    from sklearn.cluster import KMeans  # comes with umap-learn

    k = n_clusters(n, config)
    return KMeans(n_clusters=k, n_init=4, random_state=config.seed).fit_predict(xy.astype(np.float64)).astype(np.int64)


def compute_map(source: Source, config: MapConfig = MapConfig()) -> tuple[np.ndarray, np.ndarray, dict]:
    """The map of `source`: positions [d_sae, 2], clusters [d_sae] and how it was made."""
    started = time.perf_counter()
    directions = source.decoder().detach().cpu().numpy()
    xy = embed(directions, config)
    clusters = cluster(xy, config)
    info = {**asdict(config), "method": "umap" if len(xy) >= MIN_UMAP_POINTS else "pca",
            "space": source.output_hook, "n_clusters": int(clusters.max()) + 1 if len(clusters) else 0,
            "bounds": [float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())] if len(xy) else [0.0, 0.0, 0.0, 0.0],
            "seconds": round(time.perf_counter() - started, 3), "computed_at": datetime.now(UTC).isoformat()}  # fmt: skip
    return xy, clusters, info


def ensure_maps(store: Store, sources: Iterable[tuple[Source, int]], *, config: MapConfig = MapConfig(),
                redo: Sequence[int] = (), log=print) -> list[str]:  # fmt: skip
    """Compute and store the map of every (source, stored id) that has none (or whose id is in
    `redo`); one transaction per source. Returns the ids of the sources mapped."""
    done = []
    todo = [(s, pk) for s, pk in sources if pk in redo or not store.has_map(pk)]
    for n, (source, pk) in enumerate(todo, 1):
        log(f"  map {n}/{len(todo)}: {source.id} ({source.d_sae:,} latents) ...")
        xy, clusters, info = compute_map(source, config)
        crash_point("map")
        store.write_map(pk, xy, clusters, info)
        log(f"  map {n}/{len(todo)}: {source.id} done in {info['seconds']:.1f} s, {info['n_clusters']} clusters")
        done.append(source.id)
    return done
