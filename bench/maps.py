"""Maps: time to compute the latent maps of the default atlas's sources, and their share of `make demo`.

The default atlas has the MLP neurons of layers 2, 8, 14, 20 (4 x 1,536 output directions of
d_model 576) and TopK SAEs of 4,608 latents at layers 8, 14, 20 plus 2,304 at layer 14. Neuron
directions are SmolLM2's real down-projection columns; SAE decoders are the atlas's own when
`--db` points at a built default atlas, else unit-norm Gaussian rows of the same shapes (said
in the output). Each UMAP setting below maps every source in one fresh subprocess (so each pays
its own numba compilation, as a build does), side by side in one run:

  default   umap's defaults (spectral init, 500 epochs below 10k points)
  pca-200   init="pca", n_epochs=200: what builds use (MapConfig)

Also: how far each faster setting's map is from the default's (trustworthiness of the 2-D
neighbourhoods, sklearn), the cost of `import umap` in a fresh process, and the share of the
last measured `make demo` (22 min 40 s, bench/RESULTS.md) the default setting adds.

    .venv/bin/python bench/maps.py [--db sqlite:///…/atlas.db] [--settings default,pca-200] [--only 14-mlp,14-res-topk-4.5k]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DEMO_SECONDS = 22 * 60 + 40  # the last measured `latentpedia demo --no-serve` (bench/RESULTS.md)
NEURON_LAYERS = (2, 8, 14, 20)
SAES = {"8-res-topk-4.5k": 4608, "14-res-topk-4.5k": 4608, "14-res-topk-2304": 2304, "20-res-topk-4.5k": 4608}
SETTINGS = {"default": {"init": "spectral", "n_epochs": None}, "pca-200": {"init": "pca", "n_epochs": 200}}


def directions(db: str | None) -> tuple[dict, str]:
    """name -> [n, 576] float32 decoder directions, and where the SAE ones came from."""
    import numpy as np

    from latentpedia.models.loader import load_model
    from latentpedia.sources import NeuronSource

    model = load_model("smollm2-135m")
    out = {f"{layer}-mlp": NeuronSource(model, layer).decoder().numpy() for layer in NEURON_LAYERS}
    origin = "synthetic (unit Gaussian rows)"
    if db:
        from latentpedia.engine.resolve import load_source
        from latentpedia.store.api import Store

        store = Store.open(db)
        found = {s.name for s in store.list_sources(model.id)}
        if set(SAES) <= found:
            out |= {name: load_source(store, model, name).decoder().numpy() for name in SAES}
            origin = f"the atlas's trained SAEs ({db})"
        store.close()
    if origin.startswith("synthetic"):
        rng = np.random.default_rng(0)
        for name, n in SAES.items():
            rows = rng.normal(size=(n, model.d_model)).astype(np.float32)
            out[name] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out, origin


def run_setting(setting: str, path: str) -> None:
    """Child process: map every source of `path` (an .npz) with `setting`, print JSON."""
    import numpy as np

    from latentpedia.dashboards.maps import MapConfig, cluster, embed

    config = MapConfig(**SETTINGS[setting])
    data = np.load(path)
    timings, maps = {}, {}
    for name in data.files:
        started = time.perf_counter()
        xy = embed(data[name], config)
        cluster(xy, config)
        timings[name] = time.perf_counter() - started
        maps[name] = xy
    np.savez(path.replace(".npz", f".{setting}.npz"), **maps)
    print(json.dumps(timings))


def trustworthiness(high, low) -> float:
    from sklearn.manifold import trustworthiness as tw

    from latentpedia.dashboards.maps import unit_directions

    return float(tw(unit_directions(high), low, n_neighbors=10, metric="cosine"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--only", default="", help="comma-separated source names (default: all eight)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_setting(*args.child)
    import tempfile

    import numpy as np

    started = time.perf_counter()
    cold = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import umap; print(time.perf_counter() - t)"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    cli = subprocess.run([sys.executable, "-c", "import sys, latentpedia.cli, latentpedia.web.app; print('umap' in sys.modules)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    dirs, origin = directions(args.db)
    if args.only:
        dirs = {name: dirs[name] for name in args.only.split(",")}
    print(f"SAE decoders: {origin}; import umap in a fresh process: {float(cold.stdout):.1f} s; "
          f"imported by `latentpedia` CLI/web start: {cli.stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/dirs.npz"
        np.savez(path, **dirs)
        results = {}
        for setting in args.settings.split(","):
            t0 = time.perf_counter()
            child = subprocess.run([sys.executable, __file__, "--child", setting, path], capture_output=True, text=True, check=True)
            results[setting] = (json.loads(child.stdout.strip().splitlines()[-1]), time.perf_counter() - t0)
        names = list(dirs)
        print(f"\n| source | latents | " + " | ".join(f"{s} (s)" for s in results) + " |")
        print("|---|---|" + "---|" * len(results))
        for name in names:
            print(f"| {name} | {len(dirs[name]):,} | " + " | ".join(f"{t[name]:.1f}" for t, _ in results.values()) + " |")
        print("| **all (process wall, incl. imports/JIT)** | " + f"{sum(len(d) for d in dirs.values()):,} | "
              + " | ".join(f"**{wall:.1f}**" for _, wall in results.values()) + " |")
        if "default" in results:
            base = np.load(path.replace(".npz", ".default.npz"))
            for setting in results:
                other = np.load(path.replace(".npz", f".{setting}.npz"))
                name = "14-res-topk-4.5k" if "14-res-topk-4.5k" in dirs else names[-1]
                print(f"{setting}: trustworthiness@10 of {name}'s map {trustworthiness(dirs[name], other[name]):.3f}"
                      + ("" if setting == "default" else f" (default {trustworthiness(dirs[name], base[name]):.3f})"))
            wall = results["default"][1]
            if args.only:  # extrapolate by shape: 4 neuron layers, 3 x 4,608 and 1 x 2,304 (~half) SAE latents
                times, _ = results["default"]
                mlp = next((t for n, t in times.items() if n.endswith("-mlp")), None)
                sae = next((t for n, t in times.items() if len(dirs[n]) == 4608), None)
                if mlp is not None and sae is not None:
                    fixed = wall - sum(times.values())  # imports, numba compilation, process start
                    wall = fixed + 4 * mlp + 3.5 * sae
                    print(f"extrapolated to the 8 default sources: {fixed:.0f} s fixed + 4 x {mlp:.1f} + 3.5 x {sae:.1f} = {wall:.0f} s")
            measured = results["default"][1]
            print(f"\ndefault maps (all default sources): {wall:.0f} s = {100 * wall / DEMO_SECONDS:.1f}% of the last measured demo ({DEMO_SECONDS} s)")
            for setting, (_, other) in results.items():
                print(f"  {setting}: {other:.0f} s measured, ratio to default {other / measured:.2f}x")
    print(f"(bench wall {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
