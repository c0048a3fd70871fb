"""Training data: readers and malformed rows, prompt formats and the loss mask, truncation, packing."""
from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from webinstruct.core.shards import publish_stage, write_shard
from webinstruct.training.data import mix, pack, packing_stats, padding_share, read_examples
from webinstruct.core.formatting import (ALPACA_PROMPT, DEFAULT_CHAT_TEMPLATE, IGNORE_INDEX, FormatError, encode,
                                 encode_all, ensure_chat_template, split_tokens)

EX = {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?",
      "answer": "In May she sold 48 / 2 = 24 clips.\nIn all 48 + 24 = 72.\nThe answer is: 72", "source": "t"}


@pytest.fixture(scope="module")
def tokenizer(llm_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(llm_model_dir)


def _response_and_prompt(tokenizer, enc):
    labels, ids = enc["labels"], enc["input_ids"]
    n_prompt = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    assert all(t == IGNORE_INDEX for t in labels[:n_prompt])  # every prompt token masked
    assert labels[n_prompt:] == ids[n_prompt:]  # every response token a target
    return tokenizer.decode(labels[n_prompt:]), tokenizer.decode(ids[:n_prompt])


@pytest.mark.parametrize("fmt", ["alpaca", "chat"])
def test_loss_only_on_response_plus_eos(tokenizer, fmt):
    enc = encode(EX, tokenizer, fmt, max_len=512)
    response, prompt = _response_and_prompt(tokenizer, enc)
    assert response == EX["answer"] + tokenizer.eos_token
    assert enc["input_ids"][-1] == tokenizer.eos_token_id and not enc["truncated"]
    if fmt == "alpaca":
        assert prompt == ALPACA_PROMPT.format(instruction=EX["question"])
        assert prompt.endswith("\n\n### Response:")
    else:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": EX["question"]}], tokenize=False,
                                                 add_generation_prompt=True)
        assert prompt == rendered and prompt.endswith("<|im_start|>assistant\n")


def test_default_chat_template_for_base_models(tokenizer):
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        assert ensure_chat_template(tokenizer) and tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
        response, prompt = _response_and_prompt(tokenizer, encode(EX, tokenizer, "chat", 512))
        assert response == EX["answer"] + tokenizer.eos_token and prompt.endswith("### Assistant:\n")
    finally:
        tokenizer.chat_template = saved


def test_template_whose_prompt_is_not_a_prefix_is_refused(tokenizer):
    saved = tokenizer.chat_template
    try:  # the generation prompt says "Answer:" but the rendered conversation says "Reply:"
        tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n"
                                   "{% else %}Reply: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
                                   "{% if add_generation_prompt %}Answer:{% endif %}")
        with pytest.raises(FormatError, match="not a token prefix"):
            split_tokens(EX, tokenizer, "chat")
    finally:
        tokenizer.chat_template = saved


def test_truncation_keeps_the_prompt_and_counts(tokenizer):
    prompt, response = split_tokens(EX, tokenizer, "alpaca")
    short = len(prompt) + 5
    enc = encode(EX, tokenizer, "alpaca", short)
    assert enc["truncated"] and len(enc["input_ids"]) == short
    assert enc["input_ids"][:len(prompt)] == prompt and enc["labels"][len(prompt):] == response[:5]
    counts = Counter()
    out = encode_all([EX, EX, {**EX, "question": "word " * 400}], tokenizer, "alpaca", short, counts)
    assert len(out) == 2
    assert counts["truncated"] == 2 and counts["dropped_prompt_too_long"] == 1 and counts["examples"] == 3
    assert counts["tokens"] == 2 * short and counts["label_tokens"] == 10
    assert encode(EX, tokenizer, "alpaca", len(prompt)) is None  # no room for a single response token


def _enc(n, first_label=7):
    return {"input_ids": list(range(100, 100 + n)), "labels": [IGNORE_INDEX] + [first_label] * (n - 1)}


def test_packing_layout_and_position_ids():
    rows = pack([_enc(5), _enc(4), _enc(3), _enc(2)], max_len=8)
    # best fit, longest first: 5 -> row0, 4 -> row1, 3 -> row0 (room 3: 5+3), 2 -> row1 (4+2)
    assert [r["lengths"] for r in rows] == [[5, 3], [4, 2]]
    assert rows[0]["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[1]["position_ids"] == [0, 1, 2, 3, 0, 1]
    assert rows[0]["input_ids"] == list(range(100, 105)) + list(range(100, 103))
    assert rows[0]["labels"] == [IGNORE_INDEX] + [7] * 4 + [IGNORE_INDEX] + [7] * 2
    # a target in first position is masked once packed: it would be predicted from the previous sequence
    assert pack([_enc(2), {"input_ids": [1, 2], "labels": [1, 2]}], 8)[0]["labels"] == [IGNORE_INDEX, 7, IGNORE_INDEX, 2]
    assert pack([_enc(3)] * 3, 8) == pack([_enc(3)] * 3, 8)  # deterministic
    with pytest.raises(ValueError, match="exceeds max_len"):
        pack([_enc(9)], 8)


def test_padding_share_numbers():
    assert padding_share([4, 2, 3, 3], 2) == pytest.approx(2 / 14)  # batches padded to 4 and 3: 8 + 6
    assert padding_share([5, 5, 5], 2) == 0.0
    assert padding_share([1, 9], 1) == 0.0
    encoded = [_enc(n) for n in (5, 4, 3, 2)]
    stats = packing_stats(encoded, pack(encoded, 8), batch_size=2)
    assert stats["padding_share_unpacked"] == pytest.approx(2 / 16)  # (5,4)->10, (3,2)->6: 2 pads of 16
    assert stats["padding_share_packed"] == pytest.approx(2 / 16)  # rows of 8 and 6 padded to 8
    assert stats["packed_rows"] == 2 and stats["tokens"] == 14


def test_readers_and_malformed_rows(tmp_path):
    shards = tmp_path / "refine"
    write_shard(str(shards / "part-00000-of-00001.jsonl.gz"),
                [{"question": "Q1?", "answer": "A1"}, {"question": "", "answer": "A"}, {"question": "Q", "answer": 3}])
    publish_stage(str(shards), "refine")
    counts = Counter()
    got = list(read_examples(str(shards), "webinstruct", counts))
    assert got == [{"question": "Q1?", "answer": "A1", "source": "webinstruct"}]
    assert counts == Counter(read=1, skipped_empty_field=1, skipped_not_string=1)

    metamath = tmp_path / "MetaMathQA-395K.json"
    metamath.write_text(json.dumps([{"query": "q", "response": "r", "type": "GSM_FOBAR"}, ["not", "a", "row"],
                                    {"query": "q2"}]))
    counts = Counter()
    assert list(read_examples(str(metamath), "metamathqa", counts)) == [
        {"question": "q", "answer": "r", "source": "metamathqa/GSM_FOBAR"}]
    assert counts == Counter(read=1, skipped_not_object=1, skipped_missing_field=1)

    gsm = tmp_path / "gsm8k.jsonl.gz"
    with gzip.open(gsm, "wt") as fh:
        fh.write('{"question": "q", "answer": "a\\n#### 4"}\n{broken\n\n{"question": "   ", "answer": "a"}\n')
    counts = Counter()
    assert [e["source"] for e in read_examples(str(gsm), counts=counts)] == ["gsm8k"]
    assert counts == Counter(read=1, skipped_bad_json=1, skipped_empty_field=1)
    with pytest.raises(FileNotFoundError):
        list(read_examples(str(tmp_path / "absent")))


def test_weighted_mix_is_deterministic():
    a = [{"question": f"a{i}", "answer": "x", "source": "a"} for i in range(10)]
    b = [{"question": f"b{i}", "answer": "x", "source": "b"} for i in range(4)]
    m = mix([(a, 0.5), (b, 2)], seed=1)
    assert Counter(e["source"] for e in m) == Counter(a=5, b=8)
    assert all(sum(e is x for x in m) == 2 for e in b)  # upsampled: each twice
    assert m == mix([(a, 0.5), (b, 2)], seed=1) and m != mix([(a, 0.5), (b, 2)], seed=2)


def test_packing_best_fit_longest_first_fills_rows():
    # Input order first fit would give [6], [5], [4, 3] ... ; best fit longest first pairs 6+2, 5+3, 4+4.
    rows = pack([_enc(n) for n in (2, 3, 4, 4, 5, 6)], max_len=8)
    assert sorted(sorted(r["lengths"]) for r in rows) == [[2, 6], [3, 5], [4, 4]]
