"""One construct per concern: keys, storage, state, layers, authorities, trusts, ingest, notifier,
monitoring; plus the shared function, queues and policy helpers."""
