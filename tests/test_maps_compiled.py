"""Maps keep umap's numba-compiled code on disk (dashboards/maps.py keep_compiled_code): a new
process loads it instead of compiling again, and the map it draws is the same, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentpedia.dashboards.maps import keep_compiled_code

EMBED = """
import sys
import numpy as np
from latentpedia.dashboards.maps import embed
rng = np.random.default_rng(0)
np.save(sys.argv[1], embed(rng.normal(size=(200, 32)).astype(np.float32)))
"""


def test_umap_functions_are_switched_to_the_disk_cache_once():
    import umap  # noqa: F401  (imports the modules whose functions are switched)
    from numba.core.caching import NullCache
    from umap import layouts

    keep_compiled_code()
    assert not isinstance(layouts.clip._cache, NullCache)  # declared without cache=True
    assert keep_compiled_code() == 0  # nothing left to switch


@pytest.mark.slow
def test_a_map_drawn_from_cached_code_equals_one_drawn_from_fresh_code(tmp_path: Path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # numba writes here before the package dir
    for run in ("compiled", "cached"):
        subprocess.run([sys.executable, "-c", EMBED, str(tmp_path / f"{run}.npy")], env=env, check=True, capture_output=True)
    assert list((tmp_path / "numba").rglob("*.nbi")), "nothing was cached"
    assert np.load(tmp_path / "compiled.npy").tobytes() == np.load(tmp_path / "cached.npy").tobytes()
