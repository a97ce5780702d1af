"""REPL introspection: a Python prompt inside the running supervisor, on an owner-only Unix socket.

    python supervisor.py repl              # attach (Ctrl-D detaches); then, at its prompt:
    actors()                               # status, restarts, last error, mailbox of every actor
    why(12)                                # every decision and transition of task 12, with its reason
    ask("router", m.Introspect())          # any message of the `messages` package, by stable name

The supervisor serves it with `manhole` at `$OMNI_HOME/run/repl.sock` (directory 0700, socket 0600 at every
moment it exists: see `listen_owner_only`; manhole admits only the same user or root, by SO_PEERCRED), one session
at a time. During a session the standard streams of the session's thread are the client's (other threads keep
theirs, and the supervisor's console its own file): the helpers render with a Rich console made per call on the
`sys.stdout` of the moment.
Every answer printed passes through `redact`: a second line of defence, since no snapshot holds a key.
"""
from __future__ import annotations

import builtins
import code
import contextlib
import dataclasses
import errno
import io
import logging
import os
import socket
import stat
import sys
import threading
import time
import types
from inspect import Parameter, signature
from pathlib import Path
from typing import Any

import manhole
import pykka
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.pretty import Pretty
from rich.table import Table

import messages
from commands import system_status_now
from gateway import PERIODS
from messages import CrashNow, GetTask, GetTaskHistory, Introspect, ListTasks, SumCosts
from redaction import redact
from runtime import Directory, describe
from vocabulary import ActorName, TaskState

log = logging.getLogger(__name__)

WIDTH = 100
SUPERVISOR, STORE, GUARD, HEALTH = (ActorName.SUPERVISOR, ActorName.STATE_STORE, ActorName.LITELLM_GUARD,
                                   ActorName.HEALTH_MONITOR)
STATUS_STYLE = {"running": "green", "restarting": "yellow", "stopped": "red"}
SNAPSHOT_WAIT_S = 1.0


def socket_path(home: Path) -> Path:
    return home / "run" / "repl.sock"


# --- the helpers ----------------------------------------------------------------------------------------------

def show(*renderables: Any) -> None:
    """Print with Rich on `sys.stdout` as it is now: the attached client's during a session."""
    Console(file=sys.stdout, width=WIDTH, highlight=False).print(*renderables)


def _clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else ""


def _age(at: float) -> str:
    seconds = max(0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _table(title: str, *columns: str, flexible: str | None = None, wrap: bool = False) -> Table:
    """Columns sized to their content; the `flexible` one takes the rest of the width, and is wrapped or cut."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=flexible is not None)
    for column in columns:
        flex = column == flexible
        table.add_column(column, no_wrap=not (flex and wrap), ratio=1 if flex else None,
                         overflow="fold" if flex and wrap else "ellipsis")
    return table


class Introspection:
    """The helpers bound in the REPL: they read state through the same asks as everyone, by stable names."""

    HELPERS = ("actors", "inspect", "tasks", "task", "why", "mode", "cost", "ask", "tell", "crash")

    def __init__(self, directory: Directory, cfg: Any = None):
        self._directory = directory
        self._cfg = cfg               # the drills need it; without it `drill` and `heal` are not offered

    @property
    def names(self) -> tuple[str, ...]:
        return self.HELPERS + (("drill", "heal") if self._cfg is not None else ()) + ("help",)

    def actors(self) -> None:
        """the supervised actors: status, restarts, last error, mailbox"""
        children = self._directory.ask(SUPERVISOR, Introspect())
        snapshots = self._snapshots([child["name"] for child in children])
        table = _table("actors", "actor", "status", "restarts", "last error", "mailbox", flexible="last error")
        table.columns[2].justify = table.columns[4].justify = "right"
        for child in children:
            status = child["status"] if child["alive"] or child["status"] != "running" else "dead"
            mailbox = snapshots.get(child["name"], {}).get("mailbox")
            table.add_row(child["name"], f"[{STATUS_STYLE.get(status, 'red')}]{status}[/]", str(child["restarts"]),
                          escape(redact(child["last_error"] or "")), "—" if mailbox is None else str(mailbox))
        show(table)

    def inspect(self, name: str) -> None:
        """an actor's own snapshot (its answer to Introspect)"""
        show(f"[bold]{escape(name)}[/]", Pretty(redact(self._directory.ask(name, Introspect())), expand_all=True))

    def tasks(self, state: str | None = None, limit: int = 20) -> None:
        """the latest tasks, or only those in `state`"""
        if state is not None and state not in set(TaskState):
            show(f"[red]no state {escape(repr(state))}[/]: the states are {', '.join(TaskState)}")
            return
        views = self._directory.ask(STORE, ListTasks(state=state, limit=limit))
        table = _table(f"tasks{f' ({state})' if state else ''}: the latest {len(views)}",
                       "id", "state", "kind", "executor", "tier", "tries", "age", "description", flexible="description")
        for view in views:
            table.add_row(f"#{view.task_id}", view.state, view.kind or "", view.executor or "", view.tier or "",
                          str(view.attempts), _age(view.created_at), escape(redact(view.description)))
        show(table)

    def task(self, task_id: int) -> None:
        """one task, every field"""
        view = self._directory.ask(STORE, GetTask(task_id))
        if view is None:
            show(f"[red]there is no task #{task_id}[/]")
            return
        grid = Table.grid(padding=(0, 2))
        for name, value in redact(view.as_dict()).items():
            value = _clock(value) if name.endswith("_at") else value
            grid.add_row(f"[bold]{name}[/]", escape("" if value is None else str(value)))
        show(grid)

    def why(self, task_id: int, progress: bool = False) -> None:
        """why task `id` is where it is: its decisions and transitions, with their reasons"""
        view = self._directory.ask(STORE, GetTask(task_id))
        if view is None:
            show(f"[red]there is no task #{task_id}[/]")
            return
        events = self._directory.ask(STORE, GetTaskHistory(task_id))
        shown = [event for event in events if progress or event["kind"] != "progress"]
        table = _table(f"task #{task_id} is {view.state}: {escape(redact(view.description))}",
                       "at", "what", "move", "reason", flexible="reason", wrap=True)
        for event in shown:
            move = f"{event['from'] or 'new'} → {event['to']}" if event["kind"] == "transition" else ""
            table.add_row(_clock(event["at"]), event["kind"], move, escape(redact(event["reason"] or "")))
        hidden = len(events) - len(shown)
        show(table, *([f"[dim]{hidden} progress events not shown: why({task_id}, progress=True)[/]"] if hidden else []))

    def mode(self) -> None:
        """the system mode, the model route and the cloud's health"""
        status = system_status_now(self._directory.ask)
        grid = Table.grid(padding=(0, 2))
        grid.add_row("[bold]mode[/]", status["mode"])
        grid.add_row("[bold]route[/]", status["route"] or "none: no model route is configured")
        grid.add_row("[bold]cloud[/]", status["cloud"] or "not watched: no model route is configured")
        show(grid)

    def cost(self, period: str = "today") -> None:
        """model spend per tier for `today`, `week` or `month`, and the paid budget"""
        if period not in PERIODS:
            show(f"[red]no period {escape(repr(period))}[/]: the periods are {', '.join(PERIODS)}")
            return
        tiers = self._directory.ask(STORE, SumCosts(PERIODS[period](time.time())))
        table = _table(f"cost {period}", "tier", "calls", "usd")
        table.columns[1].justify = table.columns[2].justify = "right"
        for tier, spent in sorted(tiers.items()):
            table.add_row(tier, str(spent["calls"]), f"${spent['usd']:.4f}")
        table.add_row("[bold]total[/]", str(sum(s["calls"] for s in tiers.values())),
                      f"[bold]${sum(s['usd'] for s in tiers.values()):.4f}[/]")
        show(table, self._budget_line())

    def ask(self, name: str, message: Any, timeout_s: float = 10.0) -> None:
        """ask actor `name` any message, e.g. ask("router", m.Introspect())"""
        if self._refused(message):
            return
        try:
            answer = self._directory.ask(name, message, timeout_s)
        except Exception as error:
            show(f"[red]{escape(name)} answered {type(message).__name__} with an error:[/] {escape(describe(error))}")
            return
        show(Pretty(redact(answer), expand_all=True))

    def tell(self, name: str, message: Any) -> None:
        """tell actor `name` a message, without waiting"""
        if self._refused(message):
            return
        if self._directory.tell(name, message):
            show(f"told {escape(name)}: {type(message).__name__}")
        else:
            show(f"[red]no live actor named {escape(repr(name))}[/] (restarting, or not in the tree: see actors())")

    def crash(self, name: str) -> None:
        """crash drill: make actor `name` fail as a real fault would; its supervisor restarts it"""
        children = {child["name"]: child for child in self._directory.ask(SUPERVISOR, Introspect())}
        if name not in children:
            show(f"[red]{escape(repr(name))} is not a supervised actor[/]: choose one of {', '.join(children)}")
            return
        self._directory.tell(name, CrashNow("crash drill from the REPL"))
        show(f"crash drill: told {name} to crash (restarts so far: {children[name]['restarts']}); "
             "actors() shows it restarted")

    def drill(self, name: str) -> None:
        """a sandbox fault drill: litellm-kill, cloud-outage, rate-limit, executor-crash, actor-crash"""
        from cli.drills import DrillError, run_drill
        if name == "actor-crash":   # `supervisor.py drill actor-crash` comes through this very REPL: crash directly
            self.crash("router")
            return
        try:
            show(escape(run_drill(name, self._cfg)))
        except DrillError as error:
            show(f"[red]drill {escape(name)}:[/] {escape(str(error))}")

    def heal(self) -> None:
        """remove every fault the drills injected"""
        self.drill("heal")

    def help(self, subject: Any = None) -> None:
        """this list (help(obj) is Python's help)"""
        if subject is not None:
            builtins.help(subject)
            return
        grid = Table.grid(padding=(0, 2))
        for name in self.names:
            call = signature(getattr(self, name))
            call = call.replace(parameters=[p.replace(annotation=Parameter.empty) for p in call.parameters.values()],
                                return_annotation=Parameter.empty)
            grid.add_row(f"{name}{call}".replace("'", '"'), getattr(self, name).__doc__)
        show(f"[bold]Omni-Orchestrator REPL[/] — inside the running supervisor (pid {os.getpid()})", grid,
             "[dim]m is the messages package; anything else is plain Python. Ctrl-D detaches.[/]")

    # --- plumbing ------------------------------------------------------------------------------------------------
    def _snapshots(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Every named actor's Introspect, asked all at once; those that do not answer in time are left out."""
        futures = {}
        for name in names:
            with contextlib.suppress(pykka.ActorDeadError, AttributeError):   # AttributeError: no ref (restarting)
                futures[name] = self._directory.ref(name).ask(Introspect(), block=False)
        deadline, answers = time.monotonic() + SNAPSHOT_WAIT_S, {}
        for name, future in futures.items():
            with contextlib.suppress(Exception):
                answers[name] = future.get(timeout=max(0.001, deadline - time.monotonic()))
        return answers

    def _budget_line(self) -> str:
        if self._directory.ref(GUARD) is None:
            return "[dim]paid budget: none (no model route is configured)[/]"
        budget = self._directory.ask(GUARD, Introspect())["budget"]
        if not budget:
            return "[dim]paid budget: none configured[/]"
        return (f"paid budget: ${budget['spent_today_usd']:.4f} of ${budget['daily_cap_usd']:.2f} today, "
                f"${budget['spent_month_usd']:.4f} of ${budget['monthly_cap_usd']:.2f} this month "
                f"(${budget['held_usd']:.4f} held for calls in flight)")

    @staticmethod
    def _refused(message: Any) -> bool:
        if type(message).__module__.split(".")[0] == "messages" and dataclasses.is_dataclass(message):
            return False
        hint = " (an instance: add the parentheses)" if isinstance(message, type) else ""
        show(f"[red]not a message[/]: {escape(repr(message))}; pass one from the messages package{hint}, "
             "e.g. m.Introspect()")
        return True


def repl_namespace(directory: Directory, cfg: Any = None) -> dict[str, Any]:
    """What a REPL session starts with: the helpers, `help` listing them, and `m`, the messages package."""
    helpers = Introspection(directory, cfg)
    return {**{name: getattr(helpers, name) for name in helpers.names}, "m": messages}


# --- the supervisor's end ---------------------------------------------------------------------------------------

class ReplServer:
    """manhole on `$OMNI_HOME/run/repl.sock`, serving a fresh copy of `namespace` to one client at a time."""

    def __init__(self, home: Path, namespace: dict[str, Any]):
        self.path = socket_path(home)
        self._namespace = namespace
        self._manhole: manhole.Manhole | None = None
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._stopping = False

    def start(self) -> ReplServer:
        """Listen (the socket is there when this returns); on failure say so in the log and go on without a REPL
        (the orchestrator matters more)."""
        # first: installing again releases the previous install, which unlinks the socket's path
        self._manhole = manhole.install(
            thread=False, socket_path=str(self.path), connection_handler=self._serve,
            daemon_connection=True, patch_fork=False, strict=False,
            verbose_destination=types.SimpleNamespace(write=lambda text: log.info(text.strip())))
        try:
            listener = self._listener = listen_owner_only(self.path)
        except OSError as error:
            log.error("no REPL: %s", describe(error))
            self._manhole.release()
            self._manhole = None
            return self
        # manhole's accept loop and credential check, on our socket
        self._manhole.thread = manhole.ManholeThread(lambda: listener, self._manhole.sigmask,
                                                     self._manhole.start_timeout, self._serve, daemon_connection=True)
        self._manhole.thread.start()
        return self

    def stop(self) -> None:
        """End the session if one is attached, stop listening and remove the socket."""
        if self._manhole is None:
            return
        self._stopping = True
        thread = self._manhole.thread
        thread.stop()                               # its accept loop ends after the connection in hand
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)
        elif thread.is_alive():                     # wake its accept() with a connection it will drop
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as wake:
                wake.connect(str(self.path))
        if thread.is_alive():
            thread.join(timeout=2)
        self._manhole.release()                     # removes the socket
        self._manhole = None
        self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        """One session. Unlike manhole's own handler it does not dump every thread's stack first, and it routes
        only this thread's standard streams to the client: other threads keep writing where they did."""
        if self._stopping:
            client.close()
            return
        self._client = client
        client.settimeout(None)
        reader = io.TextIOWrapper(client.makefile("rb"), encoding="utf-8", errors="replace")
        writer = io.TextIOWrapper(client.makefile("wb"), encoding="utf-8", errors="replace", line_buffering=True)
        streams = {"stdin": reader, "stdout": writer, "stderr": writer}
        saved = {name: getattr(sys, name) for name in streams}
        routed = {name: _ThisThread(stream, saved[name]) for name, stream in streams.items()}
        for name, stream in routed.items():
            setattr(sys, name, stream)
        try:
            namespace = dict(self._namespace)
            namespace["help"]()
            console = code.InteractiveConsole(namespace, filename="<repl>")
            console.write = writer.write            # tracebacks and goodbye, even if Rich's Live restored stderr
            console.interact(banner="", exitmsg="detached")
        except (OSError, ValueError, SystemExit):   # the client went away, or typed exit()
            pass
        finally:
            for name, stream in saved.items():
                if getattr(sys, name) is routed[name]:   # unless someone (Rich's Live) swapped it since
                    setattr(sys, name, stream)
            self._client = None
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)   # the stream wrappers hold the socket open: end it for sure
            client.close()


def listen_owner_only(path: Path) -> socket.socket:
    """A Unix socket listening at `path` that never exists there with a mode wider than 0600.

    bind() makes the socket with the umask's mode (0755 with the usual 022) and no chmod can be done before it;
    the umask is the whole process's, and other threads create files. So the socket is bound at a staging name in
    the owner-only directory, narrowed to 0600 and made to listen there, then renamed into place in one step
    (replacing a dead supervisor's socket, if one was left)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    if len(os.fsencode(staging)) > 107:
        raise OSError(errno.ENAMETOOLONG, f"{path} is too long for a Unix socket; use a shorter OMNI_HOME")
    owner_only_directory(path.parent)
    staging.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(staging))
        staging.chmod(0o600)
        listener.listen(5)
        os.replace(staging, path)
    except BaseException:
        listener.close()
        staging.unlink(missing_ok=True)
        raise
    return listener


def owner_only_directory(path: Path) -> None:
    """Make `path` a 0700 directory of ours, or check that it is one and narrow it to 0700 if it was wider.
    Created with mode 0700 (a umask can only narrow that); a link or another user's directory is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} must be a directory of ours, not a {_kind(found.st_mode)}")
    if found.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"{path} belongs to uid {found.st_uid}, not to this user (uid {os.geteuid()})")
    if stat.S_IMODE(found.st_mode) != 0o700:      # it may predate us, or have met a umask that took too much
        os.chmod(path, 0o700)


def _kind(mode: int) -> str:
    return "symbolic link" if stat.S_ISLNK(mode) else "file" if stat.S_ISREG(mode) else "special file"


class _ThisThread:
    """A standard stream that is `session` for the thread that made it and `others` for every other thread."""

    def __init__(self, session: Any, others: Any):
        self._session, self._others, self._thread = session, others, threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session if threading.get_ident() == self._thread else self._others, name)
