"""Which attention kernel the trainer asks transformers for, and which transformers it accepts.

Padding-free and packed batches put several sequences in one row and restart `position_ids` at
each sequence. transformers keeps them apart from those position ids alone (with
`use_cache=False`): flash-attention 2 turns them into variable-length boundaries (no mask at
all); SDPA and eager get a block-diagonal mask built from them (quadratic in the row length).
That behaviour is what our tests check, on the transformers releases in TESTED_TRANSFORMERS.
"""
from __future__ import annotations

# The releases the trainer was tested with; setup.py's `cpu` extra pins the same range.
TESTED_TRANSFORMERS = ">=5.16,<5.20"


def flash_attn_usable() -> bool:
    """The flash-attn package is installed (a version transformers accepts) and a GPU is there."""
    from transformers.utils import is_flash_attn_2_available

    return bool(is_flash_attn_2_available())


def choose_attention(on_gpu: bool, dtype, flattened: bool, flash_available: bool | None = None) -> tuple[str, str]:
    """(attn_implementation, why) for a run on this device with these weights.

    `flattened`: the batches are packed or padding-free (several sequences per row). `dtype` is a
    torch dtype; `flash_available` None asks `flash_attn_usable()` (tests pass it in)."""
    import torch

    half = dtype in (torch.bfloat16, torch.float16)
    if not on_gpu:
        why = "CPU: PyTorch's scaled-dot-product attention"
        if flattened:
            why += "; sequences sharing a row are kept apart by a mask built from their position ids"
        return "sdpa", why
    if flash_available is None:
        flash_available = flash_attn_usable()
    if flash_available and half:
        why = f"GPU, flash-attn installed, {str(dtype).removeprefix('torch.')}"
        if flattened:
            why += ": its variable-length kernel keeps the sequences sharing a row apart without a mask"
        return "flash_attention_2", why
    if flash_available:
        return "sdpa", f"flash-attn needs bf16 or fp16 weights, these are {str(dtype).removeprefix('torch.')}"
    why = "GPU without the flash-attn package"
    if flattened:
        why += ("; packed/padding-free rows then need a block mask per row (pip install flash-attn "
                "--no-build-isolation avoids it)")
    return "sdpa", why


def check_transformers_version(installed: str | None = None) -> str:
    """The installed transformers version if it is in TESTED_TRANSFORMERS, else ValueError (one line)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if installed is None:
        import transformers

        installed = transformers.__version__
    try:
        ok = Version(installed) in SpecifierSet(TESTED_TRANSFORMERS)
    except InvalidVersion:
        ok = False
    if not ok:
        raise ValueError(
            f"transformers {installed} is installed; the trainer needs transformers{TESTED_TRANSFORMERS} (the "
            f"releases its packed and padding-free batches and its ZeRO-3 loading were tested with): "
            f"pip install 'transformers{TESTED_TRANSFORMERS}'")
    return installed
