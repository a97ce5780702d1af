"""Where claude-agent-sdk (and the Claude CLI it bundles) lives, and how `make claude` installs it there.

    python -m mcp_servers.claude_sdk install      # what `make claude` runs; instant when present
    python -m mcp_servers.claude_sdk where        # prints the folder and the bundled CLI

The SDK is pinned with hashes in requirements-claude.lock and installed with `pip --target --no-deps
--require-hashes` into `$OMNI_CACHE/claude-agent-sdk-<version>/` (`OMNI_CACHE` defaults to
`<project>/../.omni-cache`, shared by every clone on the machine, as the OpenClaw test install is). Its own
requirements come from requirements.lock, which .venv already has. A stamp file holding the lock's SHA-256
marks a finished install: a half-done one has none and is done again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCK = PROJECT_ROOT / "requirements-claude.lock"
STAMP = ".omni-installed"
INSTALL_HINT = "run `make claude`"


def cache_dir() -> Path:
    return Path(os.environ.get("OMNI_CACHE") or PROJECT_ROOT.parent / ".omni-cache").expanduser().resolve()


def sdk_version() -> str:
    match = re.search(r"^claude-agent-sdk==([^\s\\]+)", LOCK.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise ValueError(f"{LOCK}: no `claude-agent-sdk==VERSION` line")
    return match.group(1)


def sdk_dir() -> Path:
    return cache_dir() / f"claude-agent-sdk-{sdk_version()}"


def bundled_cli(folder: Path | None = None) -> Path:
    return (folder or sdk_dir()) / "claude_agent_sdk" / "_bundled" / "claude"


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def installed(folder: Path | None = None) -> bool:
    stamp = (folder or sdk_dir()) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _lock_digest()


def install() -> Path:
    """Install the locked SDK into its folder unless it is there already; returns the folder."""
    target = sdk_dir()
    if installed(target):
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
                    "--require-hashes", "--only-binary=:all:", "--target", str(partial), "-r", str(LOCK)], check=True)
    cli = bundled_cli(partial)
    if not os.access(cli, os.X_OK):
        raise SystemExit(f"{cli}: the wheel has no bundled Claude CLI for this platform")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / STAMP).write_text(_lock_digest() + "\n")
    return target


ROOT_HINT = ("the Claude CLI refuses --permission-mode bypassPermissions as root unless IS_SANDBOX=1 is in the "
             "executor's env (only in a throwaway container); acceptEdits and the other modes run as root")


def _run(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return -1, str(error)
    return done.returncode, (done.stdout.strip() or done.stderr.strip())


def _flag(args: list[str], name: str) -> str | None:
    """The value of the flag's last occurrence, as argparse takes it."""
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]
    return values[-1] if values else None


def check_cli(args: list[str], env: dict[str, str]) -> list[tuple[str, bool, str]]:
    """What `validate` says about the coder executor `python -m mcp_servers.claude_code ARGS` with env ENV:
    (subject, ok, detail) for the CLI (`claude --version`), its login (`claude auth status`, offline) and root."""
    env = {name: value for name, value in env.items() if value != ""}
    folder = Path(_flag(args, "--sdk-dir") or Path(env.get("OMNI_CACHE") or cache_dir()) / sdk_dir().name)
    cli = _flag(args, "--cli") or str(bundled_cli(folder.expanduser()))
    code, version = _run([cli, "--version"], env)
    if code != 0:
        return [("Claude CLI", False, f"{cli} does not run ({version or code}): " + (
            INSTALL_HINT if "--cli" not in args else "check --cli"))]
    checks = [("Claude CLI", True, f"{cli}: {version}")]
    code, status = _run([cli, "auth", "status"], env)
    try:
        auth = json.loads(status)
    except ValueError:
        auth = {}
    if auth.get("loggedIn"):
        checks.append(("Claude login", True, f"logged in ({auth.get('authMethod')}"
                       + (f", {auth['apiKeySource']})" if auth.get("apiKeySource") else ")")))
    else:
        checks.append(("Claude login", False, f"not logged in (HOME {env.get('HOME', '?')}): run `{cli} /login` once "
                       "as the user the orchestrator runs as, or give ANTHROPIC_API_KEY in the executor's env"))
    if os.geteuid() == 0:
        bypass = _flag(args, "--permission-mode") == "bypassPermissions"
        sandboxed = env.get("IS_SANDBOX") == "1"
        checks.append(("Claude as root", not bypass or sandboxed,
                       ("warning: running as root; " if not sandboxed else "running as root with IS_SANDBOX=1; ")
                       + ROOT_HINT))
    return checks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_servers.claude_sdk", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("install", "where"))
    args = parser.parse_args(argv)
    if args.action == "install":
        print(f"claude-agent-sdk {sdk_version()} in {install()}")
    else:
        print(f"{sdk_dir()} ({'installed' if installed() else 'not installed: ' + INSTALL_HINT})\n{bundled_cli()}")


if __name__ == "__main__":
    main()
