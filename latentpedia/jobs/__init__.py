"""Jobs from the web: typed requests (kinds.py), the worker that claims and runs them
(worker.py) through the CLI's own functions (run.py), and SAE zip uploads (uploads.py).
The queue itself lives in the store (store/jobs.py); see docs/jobs.md."""
