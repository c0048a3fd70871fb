"""Training examples as token ids: the prompt formats and the loss mask.

Two formats:

* `alpaca`: MetaMath's prompt (its train_math.py, `prompt_no_input`); the target is the response
  followed by the EOS token, appended directly after "### Response:" as MetaMath did.
* `chat`: the tokenizer's chat template (user turn = question, assistant turn = answer), the form
  MAmmoTH2 trained on. Base models ship no template: `ensure_chat_template` installs ours, and
  the trainer saves it with the tokenizer so serving and evaluation render the same string.

Labels are -100 on every prompt token and equal to the input ids on the response and its EOS.
Prompt and response are tokenized so that the boundary is exact: in `alpaca` as two pieces, in
`chat` by rendering the prompt alone (generation prompt included) and requiring its tokens to
be a prefix of the full rendering's tokens.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

IGNORE_INDEX = -100
FORMATS = ("alpaca", "chat")

ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
# MetaMath's evaluation appends this to the same prompt (zero-shot chain of thought).
ALPACA_EVAL_SUFFIX = " Let's think step by step."

# For tokenizers without a template (base models). Plain-text roles: no new special tokens to learn;
# the generation prompt ends in a newline so the answer's first token does not merge with it.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Assistant:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}")


class FormatError(ValueError):
    """The chat template cannot be split into prompt and response tokens."""


def alpaca_prompt(question: str, eval_suffix: bool = False) -> str:
    return ALPACA_PROMPT.format(instruction=question) + (ALPACA_EVAL_SUFFIX if eval_suffix else "")


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template ours; True when one was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def split_tokens(example: dict[str, Any], tokenizer, fmt: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids ending in EOS) of one example."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise FormatError("the tokenizer has no EOS token: the loss needs one to learn to stop")
    question, answer = example["question"], example["answer"]
    if fmt == "alpaca":
        # Prompt with the tokenizer's own special tokens (BOS for Llama), the response as a separate
        # piece: MetaMath tokenized the concatenated string, which can merge a token across the boundary.
        return _ids(tokenizer, alpaca_prompt(question), True), _ids(tokenizer, answer, False) + [eos]
    if fmt != "chat":
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if not getattr(tokenizer, "chat_template", None):
        raise FormatError("the tokenizer has no chat template: call ensure_chat_template(tokenizer) first")
    user = [{"role": "user", "content": question}]
    prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=False)
    prompt, full = _ids(tokenizer, prompt_text, False), _ids(tokenizer, full_text, False)
    if full[:len(prompt)] != prompt:
        raise FormatError("the chat template's prompt (rendered with add_generation_prompt=True) is not a token "
                          f"prefix of the full conversation; prompt ends {prompt_text[-40:]!r}, full conversation "
                          f"there reads {full_text[len(prompt_text) - 40:len(prompt_text) + 10]!r}")
    response = full[len(prompt):]
    # Learn the answer up to its EOS; what a template adds after it (a newline) is not a target.
    if eos in response:
        response = response[:len(response) - response[::-1].index(eos)]
    else:
        response = response + [eos]
    return prompt, response


def encode(example: dict[str, Any], tokenizer, fmt: str, max_len: int) -> dict[str, Any] | None:
    """input_ids, labels (-100 on the prompt) and `truncated`; None when the prompt alone fills max_len.

    Truncation keeps the whole prompt and cuts the end of the response (its EOS goes with it)."""
    prompt, response = split_tokens(example, tokenizer, fmt)
    if len(prompt) >= max_len:
        return None
    truncated = len(prompt) + len(response) > max_len
    response = response[:max_len - len(prompt)]
    return {"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response,
            "truncated": truncated}


def encode_all(examples: Iterable[dict[str, Any]], tokenizer, fmt: str, max_len: int,
               counts: Counter | None = None) -> list[dict[str, Any]]:
    """Encode a stream; `counts` gains examples, kept, truncated, dropped_prompt_too_long, tokens, label_tokens."""
    counts = counts if counts is not None else Counter()
    out = []
    for ex in examples:
        counts["examples"] += 1
        enc = encode(ex, tokenizer, fmt, max_len)
        if enc is None:
            counts["dropped_prompt_too_long"] += 1
            continue
        counts["kept"] += 1
        counts["truncated"] += enc["truncated"]
        counts["tokens"] += len(enc["input_ids"])
        counts["label_tokens"] += sum(1 for t in enc["labels"] if t != IGNORE_INDEX)
        out.append(enc)
    return out
