"""Instruction data: jsonl rows + a prompt template + the base model's tokenizer -> training
examples (token ids, and labels that are -100 where the loss does not count), exactly as the
trainer trains on them. `expc show --samples` prints them; the trainer batches them.

Torch-free (the `tokenizers` library reads the base's tokenizer.json, the same ids transformers
gives), so `expc show` stays fast. Tokenized examples are cached under a key made of the data's,
the tokenizer's and the template's digests, so a cache entry can never be stale.

    read_rows(path)                       (line number, row) of a jsonl file, located errors
    check_rows(rows, template, label)     every row has the fields the template fills
    Tokenizer.load(folder)                tokenizer.json + its special tokens and chat template
    examples(data, model, root, split)    the split's examples, cached
    samples(manifest, root, n)            the first n training examples as text (`expc show --samples`)
    pack(examples, max_length)            examples joined into sequences of up to max_length tokens

May import: the standard library, expc.errors and expc.pins; `tokenizers` and `jinja2` inside the
functions that need them.
"""
from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path

from expc.errors import ExpcError, Problem
from expc.pins import cache_dir, hub_snapshot, resolve, write_cache_file

IGNORE = -100  # the label torch's cross-entropy skips: positions that carry no loss
CACHE_VERSION = 1  # bump when the tokenization below changes
# The files of a base that make its tokenizer: pinned in the cache key, copied into an export.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class Example:
    ids: list[int]
    labels: list[int]  # IGNORE where the loss does not count; else the token itself (the model shifts)
    prompt_tokens: int
    where: str  # "file:line" of the row

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def read_rows(path: Path, label: str) -> list[tuple[int, dict]]:
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExpcError(f"cannot read {label}: {err}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            problems.append(Problem(f"not a JSON object: {err}", f"{label}:{number}"))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(f"a row must be a JSON object, got {type(row).__name__}", f"{label}:{number}"))
            continue
        rows.append((number, row))
    if problems:
        raise ExpcError(problems[:20] + ([Problem(f"... and {len(problems) - 20} more rows like these")]
                                          if len(problems) > 20 else []))
    if not rows:
        raise ExpcError(f"{label} has no rows")
    return rows


def fields_of(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def needed_fields(template: dict, row: dict) -> list[str]:
    if template["kind"] == "chat":
        return ["instruction", "output"]
    prompt = _prompt_text(template, row)
    return list(dict.fromkeys(fields_of(prompt) + fields_of(template["response"])))


def _prompt_text(template: dict, row: dict) -> str:
    if template["prompt_no_input"] is not None and not str(row.get("input") or "").strip():
        return template["prompt_no_input"]
    return template["prompt"]


def check_rows(rows: list[tuple[int, dict]], template: dict, label: str) -> None:
    """Every row has every field the template fills, as a string (at most 20 problems shown)."""
    problems = []
    for number, row in rows:
        for name in needed_fields(template, row):
            if name not in row:
                have = ", ".join(sorted(row)) or "no fields"
                problems.append(Problem(f"the row has no {name!r}, which the template ({template['name']}) "
                                        f"fills in (the row has: {have})", f"{label}:{number}"))
            elif not isinstance(row[name], str):
                problems.append(Problem(f"{name!r} is {type(row[name]).__name__}, not a string",
                                        f"{label}:{number}"))
    if problems:
        more = [Problem(f"... and {len(problems) - 20} more")] if len(problems) > 20 else []
        raise ExpcError(problems[:20] + more)


class Tokenizer:
    """The base's tokenizer as the trainer uses it: tokenizer.json through `tokenizers`, its
    special tokens from tokenizer_config.json, and its chat template."""

    def __init__(self, backend, bos: str | None, eos: str | None, pad: str | None, chat_template: str | None):
        self.backend, self.bos, self.eos, self.chat_template = backend, bos, eos, chat_template
        self.eos_id = backend.token_to_id(eos) if eos else None
        self.pad_id = backend.token_to_id(pad) if pad else (self.eos_id if self.eos_id is not None else 0)

    @classmethod
    def load(cls, folder: Path) -> "Tokenizer":
        from tokenizers import Tokenizer as Backend

        file = folder / "tokenizer.json"
        if not file.is_file():
            raise ExpcError(f"the base model at {folder} has no tokenizer.json (a fast tokenizer is needed)")
        config = _json(folder / "tokenizer_config.json")
        special = _json(folder / "special_tokens_map.json")

        def token(name):
            value = config.get(name) or special.get(name)
            return value.get("content") if isinstance(value, dict) else value
        template = config.get("chat_template")
        if template is None and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        return cls(Backend.from_file(str(file)), token("bos_token"), token("eos_token"), token("pad_token"), template)

    def encode(self, text: str, special: bool) -> list[int]:
        return self.backend.encode(text, add_special_tokens=special).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=False)

    def render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The chat template, rendered the way transformers renders it (a sandboxed Jinja
        environment, blocks trimmed)."""
        if not self.chat_template:
            raise ExpcError("the template is \"chat\", but the base model's tokenizer has no chat template; "
                            "use a format template (templates.alpaca) instead", "$.data.template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ExpcError(f"the chat template refused the messages: {message}", "$.data.template")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos or "",
            eos_token=self.eos or "")


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def prompt_and_response(row: dict, template: dict, tokenizer: Tokenizer) -> tuple[str, str]:
    if template["kind"] == "chat":
        user = row["instruction"] + (f"\n\n{row['input']}" if str(row.get("input") or "").strip() else "")
        messages = ([{"role": "system", "content": template["system"]}] if template["system"] else []) + [
            {"role": "user", "content": user}]
        prompt = tokenizer.render_chat(messages, add_generation_prompt=True)
        full = tokenizer.render_chat(messages + [{"role": "assistant", "content": row["output"]}],
                                     add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ExpcError("the chat template renders the conversation differently from its prompt, so the "
                            "response cannot be told apart; use a format template", "$.data.template")
        return prompt, full[len(prompt):]
    values = {k: v for k, v in row.items() if isinstance(v, str)}
    return _prompt_text(template, row).format_map(values), template["response"].format_map(values)


def tokenize(row: dict, where: str, data: dict, tokenizer: Tokenizer) -> Example | None:
    """One row -> an Example, or None when the truncation policy drops it."""
    template = data["template"]
    prompt, response = prompt_and_response(row, template, tokenizer)
    chat = template["kind"] == "chat"  # its text carries its own special tokens
    prompt_ids = tokenizer.encode(prompt, special=not chat)
    response_ids = tokenizer.encode(response, special=False)
    if not chat and tokenizer.eos_id is not None:
        response_ids.append(tokenizer.eos_id)
    ids = prompt_ids + response_ids
    limit = data["max_length"]
    if len(ids) > limit:
        policy = data["truncation"]
        if policy == "error":
            raise ExpcError(f"the example is {len(ids)} tokens ({len(prompt_ids)} prompt + {len(response_ids)} "
                            f"response), longer than max_length {limit}: raise data.max_length, or set "
                            "truncation to \"drop\" or \"right\"", where)
        if policy == "drop" or len(prompt_ids) >= limit:
            return None  # "right" that would leave no response token to learn is dropped too
        ids = ids[:limit]
    if data["loss_on"] == "all":
        labels = list(ids)
    else:
        labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids):]
    return Example(ids, labels, len(prompt_ids), where)


def pack(made: list[Example], max_length: int) -> list[Example]:
    """Examples joined, in order, into sequences of at most max_length tokens: each sequence
    takes the next example while it fits. Labels keep each example's own (-100 on its prompt);
    `where` names the first row of the sequence."""
    packed, ids, labels, where = [], [], [], None
    for e in made:
        if ids and len(ids) + len(e.ids) > max_length:
            packed.append(Example(ids, labels, 0, where))
            ids, labels, where = [], [], None
        ids, labels, where = ids + e.ids, labels + e.labels, where or e.where
    if ids:
        packed.append(Example(ids, labels, 0, where))
    return packed


def base_folder(model: dict, root: Path) -> Path:
    """Where the base's files are: its local folder, or its snapshot in the Hugging Face cache."""
    if model["revision"] is None:
        return resolve(root, model["source"])
    folder = hub_snapshot(model["source"], model["revision"])
    if folder is None:
        raise ExpcError(f"{model['source']} at revision {model['revision'][:12]} is not in the local Hugging Face "
                        "cache (nothing is downloaded); download it first, e.g. `huggingface-cli download "
                        f"{model['source']} --revision {model['revision']}`", "$.model.source")
    return folder


def split_rows(data: dict, root: Path, split: str) -> tuple[list[tuple[int, dict]], str]:
    """The rows of "train" or "val": the val file, or the tail of train (val_fraction) without one."""
    if split == "val" and "val" in data:
        path = data["val"]["path"]
        return read_rows(resolve(root, path), path), path
    path = data["train"]["path"]
    rows = read_rows(resolve(root, path), path)
    if "val" in data:
        return rows, path
    held = max(1, round(len(rows) * data["val_fraction"]))
    if held >= len(rows):
        raise ExpcError(f"{path} has {len(rows)} rows: too few to hold out a validation split; give a val file",
                        "$.data.val_fraction")
    return (rows[-held:] if split == "val" else rows[:-held]), path


def examples(data: dict, model: dict, root: Path, split: str, tokenizer: Tokenizer | None = None) -> list[Example]:
    """Every example of a split, in file order, through the cache."""
    key = _cache_key(data, model, split)
    cached = cache_dir() / "examples" / f"{key}.json"
    if key and cached.is_file():
        try:
            return [Example(*item) for item in json.loads(cached.read_text())]
        except (OSError, ValueError, TypeError):
            pass  # a damaged entry is rebuilt
    tokenizer = tokenizer or Tokenizer.load(base_folder(model, root))
    rows, path = split_rows(data, root, split)
    check_rows(rows, data["template"], path)
    made = [e for number, row in rows if (e := tokenize(row, f"{path}:{number}", data, tokenizer)) is not None]
    if not made:
        raise ExpcError(f"no example of {path} fits in max_length {data['max_length']}", "$.data.max_length")
    if key:
        write_cache_file(cached, json.dumps([[e.ids, e.labels, e.prompt_tokens, e.where] for e in made]))
    return made


def _cache_key(data: dict, model: dict, split: str) -> str | None:
    """Digests of everything the examples depend on; None (no caching) when something is unpinned."""
    files = model.get("files") or {}
    tokenizer_pins = {name: files.get(name) for name in TOKENIZER_FILES}
    if model.get("revision") is None and not tokenizer_pins["tokenizer.json"]:
        return None
    pins = {k: data[k].get("sha256") for k in ("train", "val") if k in data}
    if None in pins.values():
        return None
    key = {"version": CACHE_VERSION, "split": split, "data": pins, "val_fraction": data["val_fraction"],
           "template": data["template"], "max_length": data["max_length"], "truncation": data["truncation"],
           "loss_on": data["loss_on"], "tokenizer": tokenizer_pins,  # packing is applied after the cache
           "base": [model["source"], model.get("revision")] if model.get("revision") else None}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def render_sample(number: int, total: int, example: Example, tokenizer: Tokenizer) -> str:
    """One example as the trainer sees it: token counts, then the prompt and the response (the
    tokens the loss counts) on their own lines, special tokens shown."""
    prompt = tokenizer.decode(example.ids[:example.prompt_tokens])
    response = tokenizer.decode(example.ids[example.prompt_tokens:])
    head = (f"example {number} of {total} ({example.where}): {len(example.ids)} tokens, {example.prompt_tokens} "
            f"prompt + {len(example.ids) - example.prompt_tokens} response, {example.trained_tokens} with loss")
    return "\n".join([head, _block("prompt", prompt), _block("response", response)])


def _block(name: str, text: str) -> str:
    lines = text.split("\n")
    return "\n".join(f"  {name if i == 0 else '':<8} | {line}" for i, line in enumerate(lines))


def samples(manifest: dict, root: Path, n: int) -> str:
    """The first n training examples of a manifest, as `render_sample` prints them."""
    data = manifest["data"]
    if data["source"] != "jsonl":
        raise ExpcError(f"--samples shows instruction examples (data source \"jsonl\"); this manifest reads "
                        f"\"{data['source']}\"", "$.data.source")
    tokenizer = Tokenizer.load(base_folder(manifest["model"], root))
    made = examples(data, manifest["model"], root, "train", tokenizer)
    return "\n\n".join(render_sample(i + 1, len(made), e, tokenizer) for i, e in enumerate(made[:n]))
