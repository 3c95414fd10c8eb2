"""The birth notifications service, in four layers (docs/architecture.md; a test enforces the imports):

- ``shared``: the clock, the names both the stack and the functions derive, the functions' settings.
- ``domain``: the contract and the rules (records, messages, validation, routing, registry, geography,
  file formats). Pure: no AWS SDK, no Powertools.
- ``application``: the use cases (ingest one file, the pipeline, offline validation, notification) and
  the ports they need. No AWS SDK: every AWS call is an adapter's.
- ``adapters``: SQS sending, DynamoDB progress and digests, S3 uploads and reports, SES and GOV.UK Notify.
"""
