"""Run a Dockerfile's steps as a script, without Docker: a check that its RUN steps work.

    python scripts/dockerfile_steps.py deploy/Dockerfile ROOT [--fast]

The image's file system is ROOT: every absolute path (WORKDIR, ENV values, COPY targets) is
moved under it. COPY copies from the repository (the build context); ENV sets the variables
later steps see; RUN runs with /bin/sh in the working directory, as Docker does. The base image
is this machine (its Python must be the FROM image's version); `python` is this Python.
`--fast` lets pip use this machine's cache (the Dockerfile turns it off for the image) and skip
compiling bytecode: the same packages installed, a check rather than an image.
Exit status: the first failing step's, after printing which step it was.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

CONTEXT = Path(__file__).resolve().parent.parent


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", dockerfile.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


class Image:
    """The state a build carries from step to step: variables and the working directory."""

    def __init__(self, root: Path, fast: bool) -> None:
        self.root = root
        self.fast = fast
        shim = root / ".host-bin"
        shim.mkdir(parents=True, exist_ok=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        for name in ("python", "python3"):
            (shim / name).unlink(missing_ok=True)
            (shim / name).symlink_to(base_python)
        self.env = {"HOME": os.environ.get("HOME", "/root"),
                    "PATH": f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        if fast:
            self.env["PIP_NO_COMPILE"] = "1"
        self.workdir = root

    def inside(self, path: str) -> Path:
        """A path in the image, as a path under ROOT."""
        return self.root / path.lstrip("/") if path.startswith("/") else self.workdir / path

    def expand(self, value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.env.get(m.group(1), ""), value)

    def set_env(self, arguments: str) -> None:
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            value = self.expand(value)
            # An image path (/opt/venv, and each /path in a PATH list) moves under ROOT.
            value = ":".join(str(self.inside(p)) if p.startswith("/") and not
                             p.startswith(str(self.root)) and name != "PATH" else p
                             for p in value.split(":"))
            if not (name == "PIP_NO_CACHE_DIR" and self.fast):
                self.env[name] = value

    def copy(self, arguments: str) -> None:
        *sources, target = shlex.split(arguments)
        destination = self.inside(target)
        for source in sources:
            origin = CONTEXT / source
            into = destination / origin.name if target.endswith("/") else destination
            into.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, into, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(origin, into)

    def run(self, command: str) -> int:
        return subprocess.run(["/bin/sh", "-c", command], cwd=self.workdir, env=self.env,
                              check=False).returncode


def _same_python(image: str) -> bool:
    found = re.match(r"python:(\d+)\.(\d+)", image)
    return not found or tuple(map(int, found.groups())) == sys.version_info[:2]


def build(dockerfile: Path, root: Path, fast: bool = False) -> int:
    image = Image(root, fast)
    for number, (keyword, arguments) in enumerate(instructions(dockerfile), start=1):
        if keyword == "FROM" and not _same_python(arguments):
            print(f"step {number}: FROM {arguments} is not this machine's Python "
                  f"{sys.version_info.major}.{sys.version_info.minor}", file=sys.stderr)
            return 2
        if keyword == "ENV":
            image.set_env(arguments)
        elif keyword == "WORKDIR":
            image.workdir = image.inside(image.expand(arguments))
            image.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            image.copy(arguments)
        elif keyword == "RUN":
            print(f"step {number}: RUN {arguments[:100]}", flush=True)
            status = image.run(arguments)
            if status:
                print(f"step {number} failed ({status}): RUN {arguments}", file=sys.stderr)
                return status
    (root / "image.env").write_text("".join(f"{k}={v}\n" for k, v in image.env.items()))
    (root / "image.workdir").write_text(str(image.workdir))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dockerfile", type=Path)
    parser.add_argument("root", type=Path, help="an empty folder standing for the image")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    raise SystemExit(build(args.dockerfile.resolve(), args.root.resolve(), args.fast))


if __name__ == "__main__":
    main()
