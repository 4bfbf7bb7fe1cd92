"""Make the tiny offline assets that the fine-tuning spec, demo and tests use, in assets/:

    assets/instructions/{train,val}.jsonl   small instruction rows ({instruction, input, output})
    assets/tiny-llama/                      a randomly initialised Llama-shaped causal LM (~0.1M
                                            parameters, safetensors) and a byte-level BPE
                                            tokenizer trained here on the rows, with a chat template

Nothing is downloaded. The output is a pure function of this script and the installed
`tokenizers` / `transformers`, and it is committed: specs/finetune_lora.jsonnet pins these files
by sha256, so regenerate them only on purpose (then `expc build specs/finetune_lora.jsonnet`).

    .venv/bin/python scripts/make_tiny_assets.py [--out assets]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = ("apple river stone cloud tiger maple violet ember harbor lantern meadow copper falcon "
         "willow canyon pepper silver orbit quartz breeze garden rocket cedar puzzle").split()

# The chat template renders {system?, user, assistant} messages; the newline after each block is
# written as {{ '\n' }} because the template engine drops a raw one after {% endif %}.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def rows(rng: random.Random, n: int) -> list[dict]:
    """Tasks a small model can learn from a few hundred rows: each output follows from the input."""
    out = []
    for _ in range(n):
        word = rng.choice(WORDS)
        kind = rng.randrange(4)
        if kind == 0:
            out.append({"instruction": "Reverse the word.", "input": word, "output": word[::-1]})
        elif kind == 1:
            out.append({"instruction": "Write the word in capitals.", "input": word, "output": word.upper()})
        elif kind == 2:
            a, b = rng.randrange(10), rng.randrange(10)
            out.append({"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)})
        else:
            out.append({"instruction": "Spell the word with dashes.", "input": word, "output": "-".join(word)})
    return out


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item, sort_keys=True) + "\n" for item in items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="assets", help="folder to write (default: assets)")
    args = parser.parse_args()
    out = Path(args.out)
    rng = random.Random(20261201)
    data = out / "instructions"
    data.mkdir(parents=True, exist_ok=True)
    train, val = rows(rng, 400), rows(rng, 48)
    write_jsonl(data / "train.jsonl", train)
    write_jsonl(data / "val.jsonl", val)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    text = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in train]
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text, trainer)
    bos = tokenizer.token_to_id("<|bos|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A $B",
                                                             special_tokens=[("<|bos|>", bos)])

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    model_dir = out / "tiny-llama"
    model_dir.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(fast), max_position_embeddings=256,
                         bos_token_id=bos, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {data}/ ({len(train)} + {len(val)} rows) and {model_dir}/ ({n:,} parameters, "
          f"vocab {len(fast)})")


if __name__ == "__main__":
    main()
