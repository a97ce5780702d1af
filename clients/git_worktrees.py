"""Git worktrees, as coroutines: git runs as an asyncio subprocess, so the actor that owns the worktrees
(actors/workspace_keeper.py) never blocks on it.

    head = await base_head("/src/app", "main")                 # the commit a new worktree starts from
    await add_worktree("/src/app", "/home/ws/app/omni-app-1a2b", "omni/app-1a2b", "main")
    await remove_worktree("/src/app", "/home/ws/app/omni-app-1a2b")   # refuses a worktree with changes
"""
from __future__ import annotations

import asyncio
import os

GIT_TIMEOUT_S = 60.0
# git never asks (no editor, no credentials prompt); our commits skip the pre-commit hooks (--no-verify).
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "LC_ALL": "C"}


class GitFailed(Exception):
    """A git command failed; the message names the command and git's own words."""


async def git(repo: str, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """Run `git -C repo args…`; its stdout, stripped. Raises GitFailed."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git", "-C", repo, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **_ENV})
    except FileNotFoundError:
        raise GitFailed("git is not installed (no `git` on PATH)") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitFailed(f"git {' '.join(args)} in {repo}: no answer within {timeout_s:g}s") from None
    if process.returncode != 0:
        why = (err.decode(errors="replace").strip().splitlines() or [f"exit {process.returncode}"])[-1]
        raise GitFailed(f"git {' '.join(args)} in {repo}: {why}")
    return out.decode(errors="replace").strip()


async def base_head(repo: str, base: str) -> str:
    """The commit `base` names in `repo`."""
    return await git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")


async def check_repository(repo: str, base: str) -> str | None:
    """None when `repo` is a git repository with a branch or commit `base`; else what is wrong."""
    if not os.path.isdir(repo):
        return f"{repo}: no such folder"
    try:
        await git(repo, "rev-parse", "--git-dir")
    except GitFailed:
        return f"{repo}: not a git repository"
    try:
        await base_head(repo, base)
    except GitFailed:
        return f"{repo}: has no branch or commit {base!r}"
    return None


async def add_worktree(repo: str, folder: str, branch: str, base: str | None) -> str:
    """A new worktree at `folder` on a new `branch` from `base` (`base` None: on the existing `branch`, as a
    follow-up reopens a kept one); answers the commit it starts at."""
    await git(repo, "worktree", "add", "--quiet", *(["-b", branch, folder, base] if base else [folder, branch]))
    return await git(folder, "rev-parse", "HEAD")


async def remove_worktree(repo: str, folder: str, *, delete_branch: str | None = None, force: bool = False) -> None:
    """Remove the worktree (git refuses one with uncommitted changes unless `force`); its branch stays unless
    `delete_branch` names it (only for a worktree no task ever used)."""
    await git(repo, "worktree", "remove", *(["--force"] if force else []), folder)
    if delete_branch:
        await git(repo, "branch", "-D", delete_branch)


async def save_changes(folder: str, message: str) -> bool:
    """Commit whatever a worktree holds uncommitted onto its branch (before it is removed: nothing is lost);
    True when there was something to commit."""
    if not await git(folder, "status", "--porcelain"):
        return False
    await git(folder, "add", "-A")
    await git(folder, "-c", "user.name=Omni-Orchestrator", "-c", "user.email=omni@localhost", "commit", "-q",
              "--no-verify", "-m", message)
    return True


async def prune(repo: str) -> None:
    """Forget worktrees whose folders are gone (removed by hand)."""
    await git(repo, "worktree", "prune")
