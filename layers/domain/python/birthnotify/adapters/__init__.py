"""Every AWS and mail call: SQS sending, DynamoDB progress and digests, S3 uploads and reports, SES and
GOV.UK Notify. Each implements a port of ``birthnotify.application.ports``."""
