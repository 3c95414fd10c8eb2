"""The use cases: ingest one uploaded file, run its rows through the pipeline, check a file offline, send
the emails a processed file leads to. They reach AWS only through the ports in ``ports``."""
