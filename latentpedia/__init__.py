"""latentpedia: an offline atlas of what the neurons and SAE latents of language models do."""

__version__ = "0.1.0"
