"""SAE formats on disk: one loader file each, one registry line each, and `load_sae`.

To add a format: write a `Format` subclass in its own file (detect + read into canonical
`SAEWeights`), add an instance to `FORMATS`, and a writer to tests/sae_builders.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from latentpedia.errors import InvalidInputError
from latentpedia.sources.base import layer_of
from latentpedia.sources.formats.base import Format, RawSAE
from latentpedia.sources.formats.circuit_tracer import CircuitTracerFormat
from latentpedia.sources.formats.dictionary_learning import DictionaryLearningFormat
from latentpedia.sources.formats.gemmascope import GemmaScopeFormat
from latentpedia.sources.formats.gemmascope2 import GemmaScope2Format
from latentpedia.sources.formats.saelens import SAELensFormat
from latentpedia.sources.formats.sparsify import SparsifyFormat
from latentpedia.sources.sae import SAESource
from latentpedia.sources.validate import check_sae

# Detection order: formats recognised by their own files first; sparsify (which also accepts a
# run folder of hookpoint subfolders) last.
FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        SAELensFormat(),
        DictionaryLearningFormat(),
        GemmaScope2Format(),
        GemmaScopeFormat(),
        CircuitTracerFormat(),
        SparsifyFormat(),
    )
}


def _folder(path: str | Path) -> Path:
    """The SAE folder for a folder or a file inside one (absolute, symlinks kept)."""
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise InvalidInputError("no such file or folder", path)
    return path.parent if path.is_file() else path


def _format_of(folder: Path, path: Path) -> Format:
    """The format of `folder`; a file argument picks the format it is the marker of."""
    candidates = [fmt for fmt in FORMATS.values() if fmt.detect(folder)]
    named = [fmt for fmt in candidates if path.name in fmt.marker_files]
    if named or candidates:
        return (named or candidates)[0]
    expected = "; ".join(f"{' + '.join(fmt.marker_files)} ({fmt.name})" for fmt in FORMATS.values())
    raise InvalidInputError(f"no SAE found here: expected one of {expected}", folder)


def detect_format(path: str | Path) -> str:
    """"saelens" | "sparsify" | "dictionary_learning" | "gemmascope" | "gemmascope2" | "circuit_tracer"."""
    return _format_of(_folder(path), Path(path)).name


def load_sae(
    path: str | Path,
    *,
    expected_d_in: int | None = None,
    hook_name: str | None = None,
    source_id: str | None = None,
) -> SAESource:
    """Load the SAE (or transcoder) in `path`, whatever its format, as a checked `SAESource`.

    `expected_d_in`: the width of the model hook it will read (mismatch: InvalidInputError).
    `hook_name`: where it reads, overriding what the files say (needed when they say nothing).
    Reads only; never writes anything.
    """
    folder = _folder(path)
    fmt = _format_of(folder, Path(path))
    folder = fmt.select(folder, Path(os.path.abspath(path)))
    raw = fmt.read(folder, hook_name)
    check_sae(raw, expected_d_in)
    source = SAESource(
        raw.weights.to_float32(),
        _checked_hook(raw),
        output_hook=raw.output_hook,
        format=fmt.name,
        cfg=raw.cfg,
        origin={"path": str(folder), "hook_from": raw.hook_origin},
        source_id=source_id,
    )
    if raw.skip is not None:
        source.skip = raw.skip.float()
    return source


def _checked_hook(raw: RawSAE) -> str:
    """The hook the SAE reads; InvalidInputError asking for `hook_name` when unknown or odd."""
    if raw.hook_name is None:
        raise InvalidInputError(
            f"cannot tell which hook point this SAE reads (looked at: {raw.hook_origin}); "
            "pass hook_name, e.g. 'blocks.6.hook_resid_post'",
            raw.config_file,
        )
    try:
        layer_of(raw.hook_name)
    except ValueError as exc:
        raise InvalidInputError(f"unsupported hook point: {exc}; pass hook_name", raw.config_file) from exc
    return raw.hook_name


__all__ = ["FORMATS", "Format", "RawSAE", "detect_format", "load_sae"]
