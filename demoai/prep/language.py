"""Language identification of texts, where a detector is installed.

The detector is ``py3langid`` (BSD-3-Clause; langid.py's naive Bayes model over byte n-grams,
shipped inside the wheel: nothing is downloaded), loaded once per process with probabilities
normalized. A text that is empty or whitespace, or whose best probability is
below ``min_confidence``, is ``und`` (undetermined). Without py3langid,
:func:`language_detector` raises :class:`~demoai.errors.BackendUnavailable` and
:func:`detector_available` is False, so callers can say "not measured".

    det = language_detector()
    langs, conf = det.detect(["Das Wetter ist schön.", "The weather is nice."])  # de, en
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from demoai.errors import BackendUnavailable

__all__ = ["Detector", "language_detector", "detector_available", "detector_name", "language_mix",
           "UNDETERMINED", "DETECTOR_PACKAGE"]

UNDETERMINED = "und"
DETECTOR_PACKAGE = "py3langid"


@dataclass
class Detector:
    """An open language identifier: ``name`` (package and version, recorded in lineage),
    ``languages`` (the ISO 639 codes it can answer) and :meth:`detect`."""

    name: str
    languages: list[str]
    _model: Any

    def detect(self, texts: Sequence[str | None], min_confidence: float = 0.0
               ) -> tuple[list[str], np.ndarray]:
        """The language code and probability of each text (``und`` and 0.0 for an empty
        text or one below ``min_confidence``)."""
        langs: list[str] = []
        conf = np.zeros(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            if not t or not t.strip():
                langs.append(UNDETERMINED)
                continue
            lang, p = self._model.classify(t)
            if p < min_confidence:
                langs.append(UNDETERMINED)
            else:
                langs.append(lang)
                conf[i] = p
        return langs, conf


@functools.lru_cache(maxsize=1)
def _load() -> Detector:
    from importlib.metadata import version
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as e:
        raise BackendUnavailable("language detection needs py3langid (its model ships in the "
                                 "wheel): pip install 'demoai[lang]'",
                                 package=DETECTOR_PACKAGE) from e
    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return Detector(f"{DETECTOR_PACKAGE} {version(DETECTOR_PACKAGE)}", sorted(model.labels),
                    model)


def language_detector() -> Detector:
    """The installed detector (loaded once); BackendUnavailable when there is none."""
    return _load()


def detector_available() -> bool:
    """Whether a language detector is installed (without loading its model)."""
    import importlib.util
    try:
        return importlib.util.find_spec(DETECTOR_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def detector_name() -> str | None:
    """The installed detector's name and version (as :class:`Detector` records it), or None;
    the model is not loaded."""
    if not detector_available():
        return None
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"{DETECTOR_PACKAGE} {version(DETECTOR_PACKAGE)}"
    except PackageNotFoundError:
        return None


def language_mix(texts: Sequence[str | None], detector: Detector, *, sample: int = 10_000,
                 seed: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Rows and share per detected language over a seeded sample of at most ``sample``
    texts (all of them when there are fewer), most frequent first; and the sample size."""
    n = len(texts)
    if n > sample:
        idx = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
        texts = [texts[i] for i in idx.tolist()]
    langs, _ = detector.detect(texts)
    counts: dict[str, int] = {}
    for lang in langs:
        counts[lang] = counts.get(lang, 0) + 1
    total = len(langs) or 1
    mix = [{"language": k, "rows": v, "share": v / total} for k, v in counts.items()]
    return sorted(mix, key=lambda d: (-d["rows"], d["language"])), len(langs)
