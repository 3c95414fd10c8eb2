"""Command-line tools for trusts, authorities, testers and operators, and the embedded local cloud."""
