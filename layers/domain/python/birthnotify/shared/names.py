"""Names the CDK stack and the functions both derive, so neither can drift from the other."""

from __future__ import annotations

INBOUND_PREFIX = "inbound/"
REPORTS_PREFIX = "reports/"


def authority_queue_name(prefix: str, gss_code: str) -> str:
    """Name of an authority's FIFO queue; the stack creates it and the ingest function derives it."""
    return f"{prefix}-{gss_code}.fifo"
