"""The brainstem bench's helper process: one fresh interpreter per measurement, so imports and allocator
state never mix between models. Prints one JSON object on its last stdout line.

    python -m bench._brainstem_child make DIR HIDDEN LAYERS INTERMEDIATE
        make a random Qwen2 with sandbox.tiny_model.make_tiny_qwen2 → {"seconds", "bytes", "params"}
    python -m bench._brainstem_child measure DIR GEN_TOKENS
        LocalModel cold load → generate (twice) → unload → load again → unload, with RSS at each step
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def make(directory: Path, hidden: int, layers: int, intermediate: int) -> dict:
    from sandbox.tiny_model import make_tiny_qwen2

    started = time.perf_counter()
    make_tiny_qwen2(directory, hidden_size=hidden, layers=layers, intermediate_size=intermediate)
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    weights = (directory / "model.safetensors").stat().st_size
    return {"seconds": seconds, "bytes": size, "params": weights // 4}   # float32 weights


def measure(directory: Path, tokens: int) -> dict:
    from clients.local_model import LocalModel, process_rss_mb

    out: dict = {"rss_start_mb": process_rss_mb()}
    model = LocalModel(str(directory), max_tokens=tokens)
    out["rss_before_mb"] = process_rss_mb()
    out["load_cold_s"] = model.load()                  # includes importing mlx / mlx_lm (the first time)
    out["rss_loaded_mb"] = process_rss_mb()
    prompt = "Tell the user in one short sentence that the cloud is down and their tasks are waiting."
    started = time.perf_counter()
    model.generate(prompt, max_tokens=tokens)           # what the brainstem calls (the first: mlx warms up)
    out["gen_s"] = time.perf_counter() - started
    out.update(model._worker.call(lambda: _stream_stats(model, prompt, tokens)))   # the same again, with counts
    out["rss_generated_mb"] = process_rss_mb()
    started = time.perf_counter()
    model.unload()
    out["unload_s"] = time.perf_counter() - started
    out["rss_unloaded_mb"] = process_rss_mb()
    out["load_again_s"] = model.load()                  # the second outage of a process: mlx already imported
    out["rss_loaded_again_mb"] = process_rss_mb()
    model.unload()
    out["rss_unloaded_again_mb"] = process_rss_mb()
    import mlx.core as mx
    out["mlx"] = f"mlx {mx.__version__}, device {mx.default_device()}"
    return out


def _stream_stats(model, prompt: str, tokens: int) -> dict:
    """One more greedy generation through mlx_lm.stream_generate, on the model's own mlx thread: token
    counts and rates as mlx_lm reports them (LocalModel.generate returns only the text)."""
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    ids = model._tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    started = time.perf_counter()
    last = None
    for last in mlx_lm.stream_generate(model._model, model._tokenizer, ids, max_tokens=tokens,  # noqa: B007
                                       sampler=make_sampler(temp=0.0)):
        pass   # the last chunk carries the totals
    return {"gen_again_s": time.perf_counter() - started, "prompt_tokens": last.prompt_tokens,
            "prompt_tps": last.prompt_tps, "gen_tokens": last.generation_tokens, "gen_tps": last.generation_tps}


def main(argv: list[str]) -> int:
    if argv[0] == "make":
        result = make(Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[0] == "measure":
        result = measure(Path(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
