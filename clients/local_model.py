"""The brainstem's local model: loaded from cold when the cloud goes away, unloaded when it is back.

A plain class (no actor): the brainstem actor calls it from its own worker thread. It is used only
for the orchestrator's own small jobs — wording an outage or recovery notice, a short reply to a user
who writes while the cloud is down — never for users' tasks. `mlx` / `mlx_lm` are imported lazily
in `load()` (importing them costs ~1.5 s), so a process that never goes to brainstem mode never pays.

    model = LocalModel("/models/Qwen2.5-7B-Instruct-4bit", max_tokens=48)
    seconds = model.load()            # LocalModelUnavailable (readable message) if it cannot
    text = model.generate("Tell the user in one sentence that the cloud is down.")
    model.unload()                    # model and tokenizer dropped, mlx cache cleared, memory back
    model.status()                    # {"path": ..., "loaded": False, "load_s": 3.2, "rss_mb": 95.0}

Threads: all mlx work of one load → unload cycle runs on a private thread that `load()` starts and
`unload()` ends, whichever threads call. mlx keeps per-thread streams that must be destroyed with
`mx.clear_streams()` before that thread ends (else the process may abort at exit with "terminate
called without an active exception"), and a thread that has cleared them cannot use mlx again — so
the private thread clears them as its last act. A model still loaded at interpreter exit is unloaded
by an `atexit` hook. One lock serialises callers; generation is greedy (temperature 0) and bounded
by `max_tokens`.
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import os
import queue
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

__all__ = ["LocalModel", "LocalModelUnavailable", "process_rss_mb"]


class LocalModelUnavailable(RuntimeError):
    """The local model cannot be used; the message says why (no path, missing directory, import error…)."""


def process_rss_mb() -> float:
    """This process's resident memory now, in MiB: VmRSS on Linux, `ps` elsewhere (macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return int(out.strip()) / 1024
    except (OSError, ValueError, subprocess.SubprocessError):
        import resource  # last resort: the *peak* RSS (bytes on macOS, KiB elsewhere)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _trim_c_heap() -> None:
    """Ask glibc to give freed heap pages back to the OS (no-op elsewhere).

    mlx's CPU allocator frees with `free()`, and glibc keeps freed memory of a worker thread's arena:
    measured without this, RSS stayed at its loaded level after an unload done off the main thread.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class _MlxThread:
    """One thread that runs submitted calls in order, then clears its mlx streams and ends."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="local-model-mlx", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        future: Future = Future()
        self._jobs.put((fn, future))
        return future.result()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)
        finally:
            if "mlx.core" in sys.modules:
                sys.modules["mlx.core"].clear_streams()


class LocalModel:
    """An MLX chat model that can be loaded, used for short greedy generations and unloaded."""

    def __init__(self, path: str | None, max_tokens: int = 64, temperature: float = 0.0):
        self.path = str(path) if path else None
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.load_s: float | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._worker: _MlxThread | None = None
        self._lock = threading.RLock()
        _live.add(self)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> float:
        """Load the model from cold and return the seconds it took (0.0 if it was already loaded).

        The time includes importing mlx_lm the first time. Raises `LocalModelUnavailable`.
        """
        with self._lock:
            if self.loaded:
                return 0.0
            if not self.path:
                raise LocalModelUnavailable(
                    "no local model configured (brainstem.model_path is empty)")
            directory = Path(self.path).expanduser()
            if not directory.is_dir():
                raise LocalModelUnavailable(f"local model directory not found: {directory}")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory only: never the hub
            started = time.perf_counter()
            self._worker = _MlxThread()
            try:
                self._model, self._tokenizer = self._worker.call(lambda: _load(directory))
            except BaseException:
                self._stop_worker()
                raise
            self.load_s = time.perf_counter() - started
            return self.load_s

    def generate(self, instruction: str, max_tokens: int | None = None) -> str:
        """Answer `instruction` (one user turn, chat-templated) with at most `max_tokens` tokens.

        Raises `LocalModelUnavailable` if the model is not loaded.
        """
        with self._lock:
            if not self.loaded:
                raise LocalModelUnavailable("local model is not loaded")
            limit = max(1, max_tokens or self.max_tokens)
            return self._worker.call(lambda: self._generate(instruction, limit))

    def unload(self) -> None:
        """Drop the model and tokenizer and give their memory back (a no-op when not loaded)."""
        with self._lock:
            if self._worker is None:
                return
            self._worker.call(self._drop)  # the arrays are freed on the thread that made them
            self._stop_worker()

    def status(self) -> dict:
        """{"path", "loaded", "load_s", "rss_mb"} — for the console and the journal."""
        return {"path": self.path, "loaded": self.loaded, "load_s": self.load_s,
                "rss_mb": round(process_rss_mb(), 1)}

    def _generate(self, instruction: str, max_tokens: int) -> str:
        import mlx_lm
        from mlx_lm.sample_utils import make_sampler

        prompt = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], add_generation_prompt=True)
        text = mlx_lm.generate(self._model, self._tokenizer, prompt, verbose=False,
                               max_tokens=max_tokens, sampler=make_sampler(temp=self.temperature))
        return text.strip()

    def _drop(self) -> None:
        self._model = self._tokenizer = None
        gc.collect()
        import mlx.core as mx
        mx.clear_cache()
        _trim_c_heap()

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        self._model = self._tokenizer = None
        if worker is not None:
            worker.stop()


def _load(directory: Path) -> tuple[Any, Any]:
    """mlx_lm.load, with every failure turned into a readable LocalModelUnavailable."""
    try:
        import mlx_lm
    except Exception as exc:  # ImportError, or a broken native library
        raise LocalModelUnavailable(f"cannot import mlx_lm: {exc}") from exc
    try:
        return mlx_lm.load(str(directory))
    except Exception as exc:
        raise LocalModelUnavailable(
            f"cannot load local model from {directory}: {type(exc).__name__}: {exc}") from exc


_live: "weakref.WeakSet[LocalModel]" = weakref.WeakSet()


@atexit.register
def _unload_all() -> None:
    """A model still loaded at exit is unloaded first, so its thread clears its mlx streams."""
    for model in list(_live):
        model.unload()
