"""Selfie Mask Detector: is each face in a photo wearing a mask?

The package holds every piece of logic that the notebooks, the Voilà app and
the ``selfiemask`` command share. Heavy imports (torch, fastai) happen inside
the modules that need them, so ``import selfiemask`` stays cheap.
"""

import warnings

__version__ = "0.1.0"

# fastai decorates a few functions with ``torch.jit.script`` when ``fastai.layers`` is imported, and torch 2.14
# answers each time with "`torch.jit.script` is deprecated" (a FutureWarning): on every run of every command, about
# code no user of this project can change. fastai is imported lazily by several modules, so the one place that
# precedes all of them is here. The filter matches only that message, raised from torch.jit's own module: other
# warnings, and torch's other deprecations (jit.trace, jit.save, ...), are shown as usual.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated\.", category=FutureWarning,
                        module=r"torch\.jit\._script")
