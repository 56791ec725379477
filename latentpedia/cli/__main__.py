"""`python -m latentpedia.cli …` (how tests and `serve --workers` start the CLI)."""

from latentpedia.cli import main

main()
