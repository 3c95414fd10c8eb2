"""The functions' adapters, wired from boto3 clients: one module per function (``ingest``, ``notify``,
``mesh``), used by its handler and the tests, so that a function's cold start imports only its own adapters."""
