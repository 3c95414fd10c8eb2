"""The domain package's layers import only what docs/architecture.md allows (import-linter contracts in
pyproject.toml): rules without AWS, an application that calls AWS only through its ports."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_every_layer_imports_only_what_the_architecture_allows(capsys):
    result = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    output = capsys.readouterr().out
    assert result == 0, output
    assert "3 kept, 0 broken" in output
