"""The three Lambda layers, built without Docker.

- dependencies: Powertools and pydantic from layers/dependencies/requirements.txt, installed by pip as
  wheels for the Lambda platform (manylinux2014 aarch64, CPython 3.13) into build/layers/, keyed by a
  hash of requirements.txt and of this recipe, so a repeated synthesis reuses it and never needs Docker.
- domain: layers/domain/python, so the package lands at /opt/python/birthnotify.

Both Python layers ship bytecode compiled by a CPython 3.13 (the functions' runtime) when synthesis finds one
(``LAMBDA_BYTECODE_PYTHON``, ``python3.13`` on the PATH, or pyenv's): Lambda mounts layers read-only, so
without it every cold start compiles pydantic's, Powertools' and this package's modules from source again
(measured by make bench: ~0.18 s of each cold start). The .pyc files are unchecked-hash ones (the layer never
changes under them) and name their sources as /opt/python/... for tracebacks. Without such an interpreter
the layers ship source only (still correct; synthesis says so).
- config: the registry, the councils data it names and the postcode index built from the postcode directory
  it names (`birthnotify postcodes build`), at /opt/config/. The layer's copy of the registry names the index,
  so the function maps the index into memory instead of reading a CSV.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Annotations, AssetHashType
from aws_cdk import aws_lambda as lambda_
from birthnotify.domain.postcodes import FORMAT_VERSION, MAGIC, build_index
from birthnotify.domain.registry import Registry
from constructs import Construct

from infra.config import ROOT, StageConfig

BUILD_DIR = ROOT / "build" / "layers"
REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
DOMAIN_LAYER = ROOT / "layers" / "domain"
CONFIG_MOUNT = "/opt/config"
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_TARGET = (
    "--platform",
    "manylinux2014_aarch64",
    "--only-binary=:all:",
    "--python-version",
    "3.13",
    "--implementation",
    "cp",
)
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")
"""Distributions the Lambda Python runtime already has: left out of the layer, so that the runtime's boto3
is never paired with a different botocore (aws-xray-sdk depends on botocore)."""
PURE_PYTHON_SDISTS = ("docopt==0.6.2",)
"""Dependencies published only as source (docopt, required by notifications-python-client's metadata):
built into a platform-independent wheel first, because a cross-platform install takes wheels only."""
RECIPE = (
    "v2 "
    + " ".join(PIP_TARGET)
    + " --no-compile minus "
    + ",".join(PROVIDED_BY_RUNTIME)
    + " sdists "
    + ",".join(PURE_PYTHON_SDISTS)
)
EXCLUDE = ["**/__pycache__", "**/*.pyc", ".DS_Store"]
LAYER_PYTHON_PATH = "/opt/python"
BYTECODE_PYTHON_ENV = "LAMBDA_BYTECODE_PYTHON"
LAMBDA_PYTHON_VERSION = (3, 13)


@dataclass(frozen=True)
class BytecodeCompiler:
    """A CPython of the functions' runtime version, to compile the layers' modules ahead of Lambda."""

    python: Path
    tag: str
    """Its implementation cache tag (cpython-313): part of every layer's content key."""

    def compile_tree(self, root: Path, runtime_path: str) -> None:
        """Compile every module under ``root`` (which Lambda mounts at ``runtime_path``) to unchecked-hash .pyc."""
        command = [
            str(self.python),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(root),
            "-p",
            runtime_path,
            str(root),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise LayerBuildError(f"compiling {root} with {self.python} failed:\n{result.stdout}{result.stderr}")


def find_bytecode_compiler(version: tuple[int, int] = LAMBDA_PYTHON_VERSION) -> BytecodeCompiler | None:
    """The interpreter that compiles the layers: ``$LAMBDA_BYTECODE_PYTHON``, else ``python3.X`` on the PATH,
    else one under pyenv's versions; only one that reports exactly ``version``. None when there is none."""
    name = f"python{version[0]}.{version[1]}"
    candidates: list[str] = []
    if explicit := os.environ.get(BYTECODE_PYTHON_ENV):
        candidates.append(explicit)
    else:
        if found := shutil.which(name):
            candidates.append(found)
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        candidates += [str(path) for path in sorted(pyenv.glob(f"{version[0]}.{version[1]}.*/bin/{name}"))]
    for candidate in candidates:
        try:
            probe = subprocess.run(  # noqa: S603
                [candidate, "-c", "import sys; print(*sys.version_info[:2], sys.implementation.cache_tag)"],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode != 0:
            continue
        major, minor, tag = probe.stdout.split()
        if (int(major), int(minor)) == version and tag.startswith("cpython-"):
            return BytecodeCompiler(Path(candidate), tag)
    return None


class LayerBuildError(RuntimeError):
    pass


def dependencies_layer_dir(
    requirements: Path = REQUIREMENTS, cache: Path = BUILD_DIR, compiler: BytecodeCompiler | None = None
) -> tuple[Path, str]:
    """Build (once) the dependency layer's directory, with ``compiler``'s bytecode if given; returns it and
    its content key.

    Safe to call from concurrent processes: each builds into a private directory and renames it into place.
    """
    recipe = f"{RECIPE} bytecode {compiler.tag if compiler else 'none'}"
    key = hashlib.sha256(recipe.encode() + b"\0" + requirements.read_bytes()).hexdigest()[:20]
    target = cache / f"dependencies-{key}"
    if target.is_dir():
        return target, key
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".building-{key}-{uuid.uuid4().hex[:8]}"
    wheels = work / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            *PURE_PYTHON_SDISTS,
        ],
        work,
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *PIP_TARGET,
        "--find-links",
        str(wheels),
        "--target",
        str(work / "python"),
        "-r",
        str(requirements),
    ]
    _run(command, work)
    shutil.rmtree(wheels)
    _prune(work / "python")
    _finish(work, target, compiler)
    return target, key


def domain_layer_dir(
    source: Path = DOMAIN_LAYER, cache: Path = BUILD_DIR, compiler: BytecodeCompiler | None = None
) -> tuple[Path, str]:
    """Stage the domain layer (``source``/python, caches left out), with ``compiler``'s bytecode if given;
    returns the directory and its content key (sources and compiler), so a repeated synthesis reuses it."""
    modules = sorted(
        path
        for path in (source / "python").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" and path.name != ".DS_Store"
    )
    digest = hashlib.sha256(f"domain bytecode {compiler.tag if compiler else 'none'}".encode())
    for path in modules:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    key = digest.hexdigest()[:20]
    target = cache / f"domain-{key}"
    if target.is_dir():
        return target, key
    work = cache / f".building-domain-{uuid.uuid4().hex[:8]}"
    for path in modules:
        staged = work / path.relative_to(source)
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staged)
    _finish(work, target, compiler)
    return target, key


def _finish(work: Path, target: Path, compiler: BytecodeCompiler | None) -> None:
    """Compile a staged Python layer's modules (``work``/python), if a compiler is given, and publish it."""
    if compiler is not None:
        try:
            compiler.compile_tree(work / "python", LAYER_PYTHON_PATH)
        except LayerBuildError:
            shutil.rmtree(work, ignore_errors=True)
            raise
    _publish(work, target)


def _publish(work: Path, target: Path) -> None:
    """Rename a finished build into place; another process that finished first built the same content."""
    try:
        os.rename(work, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(work, ignore_errors=True)


def _run(command: list[str], work: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise LayerBuildError(f"building the dependency layer failed ({' '.join(command)}):\n{result.stderr}")


def _prune(site: Path) -> None:
    names = {name.lower().replace("-", "_") for name in PROVIDED_BY_RUNTIME}
    for entry in list(site.iterdir()):
        base = entry.name.split("-", 1)[0].lower() if entry.name.endswith(".dist-info") else entry.name.lower()
        if base in names or entry.name in ("bin", "__pycache__"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def config_layer_dir(config: StageConfig, registry: Registry, cache: Path = BUILD_DIR) -> Path:
    """Stage config/ as the layer lays it out: /opt/config/registry.toml (naming the index), the councils
    data, and the postcode index, built from the directory CSV the registry names (or copied, if it names an
    index already). Cached by content, so a repeated synthesis reuses it."""
    folder = config.registry_path.parent
    postcodes_name = _relative(registry.postcode_directory.file)
    index_name = postcodes_name.with_suffix(".idx")
    sources = {
        "registry.toml": config.registry_path,
        _relative(registry.councils.file).as_posix(): folder / registry.councils.file,
        "postcodes": folder / postcodes_name,
    }
    digest = hashlib.sha256(f"index format {FORMAT_VERSION}".encode())
    for name, path in sorted(sources.items()):
        if not path.is_file():
            raise LayerBuildError(f"the config layer needs {path}, which does not exist")
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache / f"config-{digest.hexdigest()[:20]}"
    if not target.is_dir():
        work = cache / f".building-config-{uuid.uuid4().hex[:8]}"
        staged = work / "config"
        (staged / index_name).parent.mkdir(parents=True)
        for name, path in sources.items():
            if name not in ("registry.toml", "postcodes"):
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staged / name)
        directory = sources["postcodes"]
        with directory.open("rb") as handle:
            is_index = handle.read(len(MAGIC)) == MAGIC
        if is_index:
            shutil.copyfile(directory, staged / index_name)
        else:
            build_index(directory, staged / index_name, registry.postcode_directory)
        text = config.registry_path.read_text(encoding="utf-8")
        (staged / "registry.toml").write_text(_naming_postcodes(text, index_name.as_posix()), encoding="utf-8")
        _publish(work, target)
    return target


def _relative(file: str) -> Path:
    path = Path(file)
    if path.is_absolute() or ".." in path.parts:
        raise LayerBuildError(
            f"the config layer ships files beside the registry: {file!r} must be a path below the registry's folder"
        )
    return path


def _naming_postcodes(text: str, index_file: str) -> str:
    """The registry's text with ``[postcode_directory] file`` naming ``index_file`` (the line replaced, or added
    with the table where the registry relies on the default), checked by parsing both: nothing else may
    change."""
    expected = tomllib.loads(text)
    expected.setdefault("postcode_directory", {})["file"] = index_file
    line = f'file = "{index_file}"'
    table = re.search(r"^\[postcode_directory\][^\n]*\n(?:(?![ \t]*\[).*\n?)*", text, flags=re.MULTILINE)
    if table is None:
        rewritten = f"{text.rstrip()}\n\n[postcode_directory]\n{line}\n"
    else:
        header, _, body = table.group().partition("\n")
        body, found = re.subn(
            r"^([ \t]*)file[ \t]*=.*$", lambda m: m.group(1) + line, body, count=1, flags=re.MULTILINE
        )
        rewritten = text[: table.start()] + header + "\n" + (body if found else f"{line}\n{body}") + text[table.end() :]
    try:
        same = tomllib.loads(rewritten) == expected
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise LayerBuildError(
            "the config layer ships a copy of the registry that names the postcode index, and "
            'could not write it: give [postcode_directory] a line file = "..." of its own'
        )
    return rewritten


class Layers(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, registry: Registry) -> None:
        super().__init__(scope, construct_id)
        compiler = find_bytecode_compiler()
        if compiler is None:
            Annotations.of(self).add_info(
                f"No CPython {LAMBDA_PYTHON_VERSION[0]}.{LAMBDA_PYTHON_VERSION[1]} found (set {BYTECODE_PYTHON_ENV}): "
                "the layers ship without bytecode, so each cold start compiles their modules"
            )
        deps_dir, deps_key = dependencies_layer_dir(compiler=compiler)
        domain_dir, domain_key = domain_layer_dir(compiler=compiler)
        common = {"compatible_runtimes": [RUNTIME], "compatible_architectures": [ARCHITECTURE]}
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            layer_version_name=f"{config.prefix}-dependencies",
            description="aws-lambda-powertools and pydantic (layers/dependencies/requirements.txt)",
            # The key already covers requirements.txt and the pip recipe: no need to hash 30 MB of files.
            code=lambda_.Code.from_asset(str(deps_dir), asset_hash=deps_key, asset_hash_type=AssetHashType.CUSTOM),
            **common,
        )
        self.domain = lambda_.LayerVersion(
            self,
            "Domain",
            layer_version_name=f"{config.prefix}-domain",
            description="the birthnotify domain package (/opt/python/birthnotify)",
            code=lambda_.Code.from_asset(str(domain_dir), asset_hash=domain_key, asset_hash_type=AssetHashType.CUSTOM),
            **common,
        )
        self.config = lambda_.LayerVersion(
            self,
            "Config",
            layer_version_name=f"{config.prefix}-config",
            description="registry, councils data and postcode index (/opt/config)",
            code=lambda_.Code.from_asset(str(config_layer_dir(config, registry))),
            **common,
        )
        self.registry_path = f"{CONFIG_MOUNT}/registry.toml"

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.dependencies, self.domain, self.config]
