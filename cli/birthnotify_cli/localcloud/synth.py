"""The CDK app, synthesized for the local stage through ``infra.app.synthesize`` (no CDK CLI), cached.

The cache is keyed by the content of every source that shapes the template or its assets (infra/,
functions/, layers/, config/, cdk.json) and the aws-cdk-lib version, so a cached template is always the
one the current sources would produce. Processes that start a local cloud at the same time (pytest-xdist
workers) share it: one synthesizes under a lock, the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STAGE = "local"
SOURCES = ("infra", "functions", "layers", "config", "cdk.json")
CACHE = ROOT / "build" / "localcloud" / "synth"
KEEP = 3
"""Cached syntheses kept (the newest); older ones are removed."""


@dataclass(frozen=True)
class Synthesized:
    template_paths: tuple[Path, ...]
    """Every stack's template, in deployment order (a stack after those it depends on)."""
    cached: bool
    key: str

    @property
    def template_path(self) -> Path:
        """The first stack's template (the core stack: every other one depends on it)."""
        return self.template_paths[0]

    @property
    def outdir(self) -> Path:
        return self.template_path.parent

    @property
    def template(self) -> dict:
        return json.loads(self.template_path.read_text(encoding="utf-8"))


def sources_key(root: Path = ROOT, sources: tuple[str, ...] = SOURCES) -> str:
    """A hash of the content of every source file the synthesis reads, and of the CDK library version."""
    digest = hashlib.sha256()
    try:
        digest.update(f"aws-cdk-lib {metadata.version('aws-cdk-lib')}\n".encode())
    except metadata.PackageNotFoundError:
        pass
    for source in sources:
        path = root / source
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and "__pycache__" not in p.parts
                and p.suffix not in (".pyc", ".pyo")
                and ".pytest_cache" not in p.parts
            )
        else:
            files = []
        for file in files:
            digest.update(f"{file.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def synthesize_cached(
    cache: Path = CACHE,
    progress: Callable[[str], None] | None = None,
    synthesize: Callable[[Path], object] | None = None,
) -> Synthesized:
    """The local stage's templates (and their cdk.out with the asset directories), synthesized if no cached
    synthesis matches the current sources."""
    say = progress or (lambda message: None)
    key = sources_key()
    target = cache / key[:20]
    templates = _templates_in(target)
    if templates:
        return Synthesized(templates, True, key)
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        templates = _templates_in(target)  # another process may have made it while we waited
        if templates:
            return Synthesized(templates, True, key)
        say("synthesizing the CDK app (the sources changed since the last synthesis) ...")
        partial = cache / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        (synthesize or _synthesize_infra)(partial / "cdk.out")
        (partial / "key").write_text(key)
        partial.rename(target)
        _prune(cache, keep=target)
    templates = _templates_in(target)
    assert templates
    return Synthesized(templates, False, key)


def zipped(directory: Path, cache: Path) -> Path:
    """The asset directory as a zip (as the CDK CLI uploads it), made once per asset hash."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{directory.name}.zip"
    if not target.exists():
        partial = cache / f".{directory.name}.{os.getpid()}.partial"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for file in sorted(directory.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(directory).as_posix())
        partial.replace(target)
    return target


def _synthesize_infra(outdir: Path) -> None:
    if not (ROOT / "infra" / "app.py").exists():
        raise RuntimeError(f"the local cloud deploys the CDK app in {ROOT / 'infra'}, which is not there")
    # Before aws_cdk is imported: jsii starts node then, and an end-of-life node prints a banner unless its
    # major version is listed here (the Makefile sets the same).
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from infra.app import synthesize

    synthesize(STAGE, outdir)  # the templates are read back in deployment order (deployment_order)


def deployment_order(outdir: Path) -> tuple[Path, ...]:
    """The stack templates of a cloud assembly, each after the stacks it depends on (manifest.json's
    ``dependencies``, as ``cdk deploy --all`` orders them); by name when there is no manifest."""
    templates = {path.name: path for path in outdir.glob("*.template.json")}
    manifest = outdir / "manifest.json"
    if not manifest.exists():
        return tuple(templates[name] for name in sorted(templates))
    artifacts = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"]
    stacks = {
        artifact_id: artifact
        for artifact_id, artifact in artifacts.items()
        if artifact.get("type") == "aws:cloudformation:stack"
    }
    ordered: list[str] = []

    def visit(artifact_id: str, path: tuple[str, ...]) -> None:
        if artifact_id in ordered:
            return
        if artifact_id in path:
            raise RuntimeError(f"stacks depend on each other in a cycle: {' -> '.join((*path, artifact_id))}")
        for dependency in stacks[artifact_id].get("dependencies", []):
            if dependency in stacks:
                visit(dependency, (*path, artifact_id))
        ordered.append(artifact_id)

    for artifact_id in sorted(stacks):
        visit(artifact_id, ())
    return tuple(templates[stacks[a]["properties"]["templateFile"]] for a in ordered)


def _templates_in(directory: Path) -> tuple[Path, ...]:
    outdir = directory / "cdk.out"
    if not (directory / "key").exists():
        return ()
    templates = deployment_order(outdir)
    if not templates:
        raise RuntimeError(f"no stack template in {outdir}")
    return templates


def _prune(cache: Path, keep: Path) -> None:
    done = sorted(
        (d for d in cache.iterdir() if d.is_dir() and (d / "key").exists() and d != keep),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for stale in done[KEEP - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)
    zips = cache / "zips"
    if zips.is_dir():
        live = {asset.name for d in cache.iterdir() if (d / "cdk.out").is_dir() for asset in (d / "cdk.out").iterdir()}
        for archive in zips.glob("*.zip"):
            if archive.stem not in live:
                archive.unlink(missing_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
