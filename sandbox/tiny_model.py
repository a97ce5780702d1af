"""A tiny random-weight Qwen2 model directory, made offline, that `mlx_lm.load(path)` accepts.

It stands in for the real brainstem model (Qwen2.5-7B-Instruct, 4-bit MLX) in tests and the sandbox:
same loader, same tokenizer machinery, same chat template call, same generate loop — only the
weights are random, so what it says is gibberish.

- tokenizer: byte-level BPE trained with `tokenizers` on a built-in English / Traditional Chinese /
  Simplified Chinese corpus (byte-level, so any text round-trips), Qwen's special tokens
  (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) and a ChatML-style `chat_template`;
- `config.json`: `model_type` qwen2, hidden 64, 2 layers, 4 heads, 2 KV heads, tied embeddings;
- `model.safetensors`: the parameters of `mlx_lm.models.qwen2.Model`, flattened with `tree_flatten`.

Default size is ~0.4 MB, made in ~0.1 s. Bigger ones (`hidden_size=512, layers=6` ≈ 80 MB) are
for measuring memory. A directory that already holds a complete model is returned as is.

    from sandbox.tiny_model import make_tiny_qwen2
    path = make_tiny_qwen2(Path("/tmp/tiny-qwen2"))
    model, tokenizer = mlx_lm.load(str(path))

    python -m sandbox.tiny_model /tmp/tiny-qwen2 [--hidden-size 512 --layers 6]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "model.safetensors")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "The cloud is unreachable. Tasks are suspended and will resume when it is back.",
    "The cloud is back. Suspended tasks are resuming now.",
    "Sorry, I am running on a small local model while the cloud is down. Please try again later.",
    "You are a helpful assistant. Reply briefly and politely to the user.",
    "Write one short sentence telling the user that their task is waiting.",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>-_/\\@#$%&*+=",
    # Traditional Chinese
    "雲端離線，任務已掛起。",
    "雲端已恢復，任務恢復中。",
    "抱歉，雲端目前無法連線，我正在使用本地模型，請稍後再試。",
    "你是一個樂於助人的助理，請簡短而有禮貌地回覆使用者。",
    "請用一句話告訴使用者，他的任務正在等待處理。",
    # Simplified Chinese
    "云端离线，任务已挂起。",
    "云端已恢复，任务恢复中。",
    "抱歉，云端目前无法连接，我正在使用本地模型，请稍后再试。",
    "你是一个乐于助人的助手，请简短而有礼貌地回复用户。",
    "请用一句话告诉用户，他的任务正在等待处理。",
]


def is_complete(directory: Path) -> bool:
    """True when `directory` holds every file of a model (the last one is written last)."""
    return all((directory / name).is_file() for name in FILES)


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tokenizer


def make_tiny_qwen2(directory: Path, hidden_size: int = 64, layers: int = 2,
                    intermediate_size: int | None = None, vocab_size: int = 1024,
                    seed: int = 1) -> Path:
    """Create (or reuse) a tiny random Qwen2 model in `directory` and return `directory`.

    `hidden_size` must be a multiple of 4 (4 attention heads, 2 KV heads). `vocab_size` is the BPE
    target; the model's vocabulary is the trained tokenizer's actual size. The weights are random
    (`seed`; 1 happens to make the default model say visible words). Offline, no hub access.
    """
    directory = Path(directory)
    if is_complete(directory):
        return directory
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    tokenizer.save(str(directory / "tokenizer.json"))
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=1))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 32768,
        "add_prefix_space": False, "clean_up_tokenization_spaces": False,
        "additional_special_tokens": SPECIAL_TOKENS, "chat_template": CHAT_TEMPLATE, **specials,
    }, indent=1, ensure_ascii=False))

    config = {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": hidden_size, "num_hidden_layers": layers,
        "intermediate_size": intermediate_size or hidden_size,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "vocab_size": tokenizer.get_vocab_size(), "max_position_embeddings": 2048,
        "rope_theta": 1000000.0, "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }
    (directory / "config.json").write_text(json.dumps(config, indent=1))

    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    partial = directory / ".model.tmp.safetensors"  # not matched by mlx_lm's model*.safetensors
    mx.save_safetensors(str(partial), weights, metadata={"format": "mlx"})
    partial.replace(directory / "model.safetensors")  # last: its presence means "complete"
    del model, weights
    mx.clear_cache()  # give the (possibly large) random weights back now
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make a tiny random Qwen2 model for mlx_lm.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = make_tiny_qwen2(args.directory, hidden_size=args.hidden_size, layers=args.layers)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"{path}: {size / 1024:.0f} KB in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
