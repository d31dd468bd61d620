"""Selfie Mask Detector: is each face in a photo wearing a mask?

The package holds every piece of logic that the notebooks, the Voilà app and
the ``selfiemask`` command share. Heavy imports (torch, fastai) happen inside
the modules that need them, so ``import selfiemask`` stays cheap.
"""

__version__ = "0.1.0"
