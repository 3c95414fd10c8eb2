"""The contract and the rules: what a trust sends, what a council receives, and how a record is judged and
routed. Pure Python and pydantic: no AWS SDK, no Powertools, no I/O beyond reading given files."""
