"""Experiments on latents: steering, ablation, activation patching, logit lens and DLA.

Pure torch on a `LoadedModel` (never imports the web framework); one module per experiment:
`steering`, `ablation`, `patching`, `lens`. `common` holds what they share (a `Latent` is a
source plus an index; prompt and input validation); `resolve` turns an atlas' stored source
into a `Source` to experiment on. `registry.EXPERIMENTS` lists them for the CLI, the
/experiments page and docs/experiments.md.
"""
