"""Training and evaluating SAEs on cached activations (see docs/training.md).

`saes/` one file per architecture, `activations` the shuffled shard stream, `config` the knobs,
`trainer` the loop (checkpoints, dead latents, schedule), `export` SAELens folders, `evals`
quality metrics, `run` the CLI glue (validate, train, evaluate, import).
"""
