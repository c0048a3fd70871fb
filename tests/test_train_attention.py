"""The trainer's attention choice per device and its transformers version gate (fast, no model)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from webinstruct.training.attention import TESTED_TRANSFORMERS, check_transformers_version, choose_attention

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_with_flash_attn_and_half_precision_takes_flash_attention_2(dtype):
    impl, why = choose_attention(on_gpu=True, dtype=dtype, flattened=True, flash_available=True)
    assert impl == "flash_attention_2" and "without a mask" in why


def test_everything_else_takes_sdpa():
    cases = {(False, torch.float32, True): "CPU", (False, torch.bfloat16, False): "CPU",
             (True, torch.bfloat16, False): "without the flash-attn package",
             (True, torch.float32, True): "needs bf16 or fp16"}
    for (on_gpu, dtype, flash), expected in cases.items():
        impl, why = choose_attention(on_gpu, dtype, flattened=True, flash_available=flash)
        assert impl == "sdpa" and expected in why, (on_gpu, dtype, flash, why)
    # A CPU never asks for flash-attn, whatever is installed.
    assert choose_attention(False, torch.bfloat16, flattened=False, flash_available=True)[0] == "sdpa"


def test_reason_mentions_packed_rows_only_when_batches_are_flattened():
    _, flat = choose_attention(True, torch.bfloat16, flattened=True, flash_available=False)
    _, padded = choose_attention(True, torch.bfloat16, flattened=False, flash_available=False)
    assert "pip install flash-attn" in flat and "pip install" not in padded


def test_this_machine_detects_no_flash_attn():
    """Here (no GPU, no flash-attn) the real detection gives SDPA."""
    assert choose_attention(torch.cuda.is_available(), torch.bfloat16, flattened=True)[0] == "sdpa"


@pytest.mark.parametrize("version", ["5.16.0", "5.16.1", "5.19.0", "5.19.3"])
def test_tested_transformers_versions_pass(version):
    assert check_transformers_version(version) == version


@pytest.mark.parametrize("version", ["4.57.1", "5.15.2", "5.20.0", "5.20.0.dev0", "6.0.0", "garbage"])
def test_other_transformers_versions_fail_with_the_range_and_the_install_line(version):
    with pytest.raises(ValueError) as err:
        check_transformers_version(version)
    message = str(err.value)
    assert "\n" not in message and f"transformers {version} is installed" in message
    assert f"pip install 'transformers{TESTED_TRANSFORMERS}'" in message


def test_installed_transformers_is_in_range_and_setup_pins_the_same():
    check_transformers_version()
    assert f'"transformers{TESTED_TRANSFORMERS}"' in (ROOT / "setup.py").read_text()


def test_trainer_refuses_an_untested_transformers_in_one_line(monkeypatch, capsys):
    import transformers

    from webinstruct.training import trainer

    monkeypatch.setattr(transformers, "__version__", "5.21.0")
    assert trainer.main(["--config", "cpu-demo", "--run-dir", "/nonexistent/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: transformers 5.21.0 is installed") and "\n" not in err
