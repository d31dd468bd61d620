"""Curating scraped photos before training: verify, dedupe, review and relabel.

The layout, all under one data root (``data/`` by default)::

    raw/<label>/...       what the scraper downloaded; cleaning never modifies it
    clean/<label>/...     verified copies under the same relative path: train on this folder
    clean/sources.csv     which raw file (and which content) was already handled
    rejected/<step>/...   files set aside by verify, duplicate or relabel, one row each in rejected/log.csv
    cache/hashes.csv      facts about each content (size, frames, perceptual hashes), keyed by sha256

Verify *copies* rather than moves: raw/ stays intact, so a wrong rejection costs
nothing and clean/ can be rebuilt from raw/ (delete clean/ with its sources.csv).
Nothing is ever deleted: what leaves clean/ goes to rejected/ with a logged reason.
Modules, in the order the steps run: :mod:`.facts` (what a file holds, cached by sha256),
:mod:`.rejects` (setting a file aside with a logged reason), :mod:`.verify`, :mod:`.dedupe`,
:mod:`.review` (the model's worst mistakes, in a widget) and :mod:`.relabel` (logged, undoable moves).
The layout itself is :class:`selfiemask.paths.Layout`.

A re-run is idempotent because clean/sources.csv remembers each raw file by path
and sha256: a handled file is skipped even after dedupe or relabel moved its copy.
"""
