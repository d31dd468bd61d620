"""Messages for people, worded for where they read them: the command line or a notebook.

The same advice names a command-line flag in a shell and a parameter of notebook
03's ``parameters`` cell in a notebook (:func:`term`), and goes to stderr or to the
cell's output (:func:`in_notebook`). The one wording of where training photos come
from (:data:`WHERE_PHOTOS_COME_FROM`) lives here too. Layer 0: anything may say these.
"""

from __future__ import annotations

import sys

__all__ = ["TERMS", "WHERE_PHOTOS_COME_FROM", "in_notebook", "term"]


def in_notebook() -> bool:
    """Whether we run in a Jupyter kernel: messages then name the notebook's parameters, not the command's options.

    Asked of IPython's running shell, not of ``sys.modules``: a process that merely imported ipykernel (ipywidgets
    does) is not a notebook.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


#: The same advice in the two places training runs from: (command line, notebook 03's parameters).
TERMS = {
    "scratch": ("--no-pretrained", '`pretrained = "none"`'),
    "require": ("--pretrained imagenet", '`pretrained = "imagenet"`'),
    "default": ("--pretrained auto", '`pretrained = "auto"`'),
    "mobilenet": ("--arch mobilenet_v2", "`mobilenet_v2` in `vision_learner`"),
    "force": ("--force", "`force = True`"),
}


def term(key: str) -> str:
    """The name of setting ``key`` where the reader is: a flag on the command line, a parameter in a notebook."""
    return TERMS[key][in_notebook()]


WHERE_PHOTOS_COME_FROM = (
    "Training reads one folder per class: <data_dir>/with_mask/, <data_dir>/without_mask/. Photos come from\n"
    "  - notebook 01 (01_scrape.ipynb), which saves them in data/raw/<label>/, or\n"
    "  - your own photos, put in data/raw/with_mask/ and data/raw/without_mask/;\n"
    "then notebook 02 (02_clean.ipynb, or `selfiemask clean all`) checks them and writes data/clean/, the default.\n"
    "(The project's own training set, ../shared/data/train, is only beside the project's own checkout.)")
