"""Where things live: the checkout, the shipped model, the data layout and the caches. The one place.

Two kinds of path, on purpose: the checkout's own files (the shipped model,
the crop cache) are found from this file whatever the working directory, while
the data layout of the cleaning steps is relative to a data root the user
names (``data`` in the working directory by default).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CACHE", "DEFAULT_MODEL", "PROJECT_ROOT", "SAMPLES", "Layout", "default_crop_cache", "history_dir"]

#: The checkout this package lives in: caches go to its data/ whatever the working directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The shipped learner, with its card beside it (``export.json``).
DEFAULT_MODEL = PROJECT_ROOT / "export.pkl"
#: The app's sample photos, shipped inside the package.
SAMPLES = Path(__file__).resolve().parent / "samples"


def history_dir(model_path: str | Path) -> Path:
    """Where the kept versions of a model live: ``models/history/`` beside it, one folder per version.

    Beside the shipped ``export.pkl`` that is the checkout's ``models/history/``, which git ignores:
    a re-export or a restore puts the model it replaces there first (``history.keep_version``).
    """
    return Path(model_path).parent / "models" / "history"


@dataclass(frozen=True)
class Layout:
    """Where each cleaning step reads and writes; :meth:`under` gives the project's standard layout."""

    raw: Path
    clean: Path
    rejected: Path
    cache: Path

    @classmethod
    def under(cls, root: str | Path = "data") -> Layout:
        root = Path(root)
        return cls(root / "raw", root / "clean", root / "rejected", root / "cache")

    @property
    def reject_log(self) -> Path:
        return self.rejected / "log.csv"

    @property
    def hash_cache(self) -> Path:
        return self.cache / "hashes.csv"

    @property
    def sources(self) -> Path:
        return self.clean / "sources.csv"

    @property
    def relabel_log(self) -> Path:
        return self.clean / "relabel_log.csv"


#: The project's cache folder (face crops); a data folder may be read-only, this one is ours.
CACHE = PROJECT_ROOT / "data" / "cache"


def default_crop_cache(data_dir: Path, cache: str | Path = CACHE) -> Path:
    """Where the face crops of ``data_dir`` are cached: ``<cache>/crops/<folder name>-<hash of its path>``.

    ``cache`` defaults to the project's ``data/cache``; notebook 02 passes its
    layout's ``cache`` folder instead.
    """
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return Path(cache) / "crops" / f"{data_dir.resolve().name}-{tag}"
