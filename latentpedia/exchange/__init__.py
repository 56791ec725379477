"""Datasets in and out: Neuronpedia's dataset export layout (import and export), analysis dumps
(Parquet, JSON Lines) and Neuronpedia's feature upload batches. See docs/neuronpedia.md.

    import_neuronpedia(store, folder)                   # np_import: resumable, one transaction per source
    NeuronpediaExporter(store, out).run(models, sources)  # np_export: the same layout out
    write_dump(store, out, "parquet" | "jsonl")          # dumps: the canonical tables (canonical.py)
    upload_batch(store, batch)                           # upload: POST /api/feature/upload-batch
"""
