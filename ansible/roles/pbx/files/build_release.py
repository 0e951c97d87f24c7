#!/usr/bin/env python3
"""Pack the controller's checkout as a PBX release, and build its wheelhouse.

Run by the pbx role on the controller (never on the server). Prints one JSON
object: the release name, the archive, the wheelhouse, the Python version and
machine the wheels were built for, and whether anything was built this time.

The release name is the checkout's git commit (12 hex digits); when the files
that go into the release differ from that commit, a hash of their content is
appended, so the same files always give the same name (a second playbook run
changes nothing) and different files never share one. The archive is
reproducible: sorted entries, fixed times and owners, normalised modes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def git(source: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.decode()


def release_files(source: Path, exclude: set[str]) -> list[str]:
    """Tracked and untracked-but-not-ignored files, minus the excluded top-level names."""
    listed = git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is None:
        names = [
            str(path.relative_to(source))
            for path in source.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        ]
    else:
        names = [name for name in listed.split("\0") if name]
    chosen = set()
    for name in names:
        top = name.split("/", 1)[0]
        path = source / name
        if top in exclude or not path.is_file() or path.is_symlink():
            continue
        chosen.add(name)
    return sorted(chosen)


def content_hash(source: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = source / name
        digest.update(name.encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def release_name(source: Path, names: list[str], digest: str, exclude: set[str]) -> str:
    commit = (git(source, "rev-parse", "--short=12", "HEAD") or "").strip()
    if not commit:
        return digest[:12]
    status = git(source, "status", "--porcelain", "--untracked-files=all", "--", *names)
    deleted = [
        name
        for name in (git(source, "ls-files", "--deleted") or "").splitlines()
        if name.split("/", 1)[0] not in exclude
    ]
    if status or deleted:
        return f"{commit}-{digest[:8]}"
    return commit


def write_archive(source: Path, names: list[str], archive: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = sorted({str(Path(n).parent) for n in names} - {"."})
        for directory in _with_parents(directories):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(_normalised(info))
        for name in names:
            path = source / name
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(_normalised(info), io.BytesIO(data))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=archive.parent, suffix=".partial", delete=False) as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write(buffer.getvalue())
    os.chmod(raw.name, 0o644)
    os.replace(raw.name, archive)


def _with_parents(directories: list[str]) -> list[str]:
    every = set()
    for directory in directories:
        path = Path(directory)
        every.add(str(path))
        every.update(str(parent) for parent in path.parents if str(parent) != ".")
    return sorted(every)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_wheelhouse(requirements: Path, build_dir: Path) -> tuple[Path, bool]:
    """`pip wheel -r requirements.txt`, keyed by the requirements and Python, as one tar.

    The tar (uncompressed: wheels are zip files already) is what the server gets.
    """
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    wheelhouse = build_dir / "wheelhouse" / f"{key}-{tag}"
    archive = wheelhouse.with_suffix(".tar")
    if (wheelhouse / ".complete").exists() and archive.exists():
        return archive, False
    wheelhouse.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=wheelhouse.parent))
    partial.chmod(0o755)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
                "-w",
                str(partial),
            ],
            check=True,
            stdout=sys.stderr,
        )
        (partial / ".complete").write_text(requirements.read_text())
        if wheelhouse.exists() and not (wheelhouse / ".complete").exists():
            shutil.rmtree(wheelhouse)
        try:
            partial.rename(wheelhouse)
        except OSError:
            # Another run built the same wheelhouse meanwhile: use that one.
            if not (wheelhouse / ".complete").exists():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    with tempfile.NamedTemporaryFile(dir=archive.parent, suffix=".partial", delete=False) as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for wheel in sorted(wheelhouse.glob("*.whl")):
                info = _normalised(tar.gettarinfo(str(wheel), arcname=wheel.name))
                info.mode = 0o644
                with open(wheel, "rb") as data:
                    tar.addfile(info, data)
    os.chmod(raw.name, 0o644)
    os.replace(raw.name, archive)
    return archive, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path)
    parser.add_argument("--build-dir", required=True, type=Path)
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--wheelhouse", action="store_true")
    args = parser.parse_args()
    source = args.source.resolve()
    build_dir = args.build_dir.resolve()

    names = release_files(source, set(args.exclude))
    for needed in ("pbxctl", "requirements.txt"):
        if needed not in names:
            print(
                f"build_release: {source} has no {needed}; is it the PBX checkout?", file=sys.stderr
            )
            return 1
    digest = content_hash(source, names)
    name = release_name(source, names, digest, set(args.exclude))
    archive = build_dir / "releases" / f"pbx-{name}.tar.gz"
    changed = False
    if not archive.exists():
        write_archive(source, names, archive)
        changed = True

    wheelhouse = None
    if args.wheelhouse:
        path, built = build_wheelhouse(source / "requirements.txt", build_dir)
        wheelhouse, changed = str(path), changed or built

    print(
        json.dumps(
            {
                "name": name,
                "archive": str(archive),
                "files": len(names),
                "wheelhouse": wheelhouse,
                "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                "machine": platform.machine(),
                "changed": changed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
