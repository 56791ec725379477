"""The lab (docs/lab.md): toy models of superposition (`toy`), SAE architectures benchmarked on
synthetic data with known features (`synthetic`, `groundtruth`) and SAEBench-style metrics of the
atlas's SAEs (`saebench`, `probing`). Pure torch: never imports the web app or the CLI."""
