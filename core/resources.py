"""Files that ship inside the package, found through `importlib.resources` so that an installed
wheel (what a Beam or Dask worker gets) has them as well as a checkout.

Recipes name bundled files by their path in the checkout (`data/seeds/positive.jsonl.gz`,
`data/sample/warc/*.warc*`); `bundled()` keeps such a path when it exists from the working
directory and otherwise points it into the installed package.
"""
from __future__ import annotations

import glob
from importlib import resources
from pathlib import Path

# Checkout folder -> package that holds its files once installed.
_FOLDERS = {"data": "webinstruct.data", "infra": "webinstruct.infra"}


def package_path(package: str, *parts: str) -> Path:
    """A file or folder inside an installed package, as a real path (packages are never zipped)."""
    return Path(str(resources.files(package).joinpath(*parts)))


def data_path(*parts: str) -> Path:
    """A file or folder of the bundled data (`data/` in the checkout)."""
    return package_path("webinstruct.data", *parts)


def infra_path(*parts: str) -> Path:
    """A file or folder under `infra/` (recipes, DeepSpeed configs)."""
    return package_path("webinstruct.infra", *parts)


def bundled(path: str) -> str:
    """`path` as given when it (or, for a glob, any match) exists from the working directory;
    else the same relative path inside the installed package when it names a bundled folder."""
    if Path(path).is_absolute() or "://" in path or glob.glob(path):
        return path
    head, _, rest = path.partition("/")
    if head in _FOLDERS and rest:
        inside = package_path(_FOLDERS[head]) / rest
        if glob.glob(str(inside)):
            return str(inside)
    return path
