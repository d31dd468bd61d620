"""Messages name what the reader can type: a flag of `selfiemask train` in a shell, a parameter of notebook 03."""

from __future__ import annotations

import argparse
import ast
import json
import re

from conftest import ROOT

from selfiemask import messages


def notebook_parameters() -> set[str]:
    nb = json.loads((ROOT / "notebooks" / "03_train.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {n.targets[0].id for n in ast.parse("".join(cell["source"])).body if isinstance(n, ast.Assign)}


def train_flags() -> set[str]:
    from selfiemask.commands import train as train_command

    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return {s for a in sub._actions for s in a.option_strings}


def test_every_term_names_a_real_flag_and_a_real_parameter():
    flags, params = train_flags(), notebook_parameters()
    notebook_text = (ROOT / "notebooks" / "03_train.ipynb").read_text()
    for key, (cli, notebook) in messages.TERMS.items():
        named = re.findall(r"--[a-z0-9-]+", cli)
        assert named and set(named) <= flags, f"{key}: {cli!r} names no flag of selfiemask train"
        setting = re.match(r"`(\w+)", notebook).group(1)
        if " = " in notebook:  # a parameter of the parameters cell
            assert setting in params, f"{key}: {notebook!r} names no parameter of notebook 03"
        else:  # a name a reader changes in one of notebook 03's cells
            assert setting in notebook_text, f"{key}: {notebook!r} names nothing in notebook 03"


def test_term_follows_where_it_is_read(monkeypatch):
    import ipykernel  # noqa: F401  (imported, as ipywidgets does, is not a notebook)

    assert not messages.in_notebook()
    assert messages.term("scratch") == "--no-pretrained"
    monkeypatch.setattr(messages, "in_notebook", lambda: True)  # as in a notebook's kernel
    assert messages.term("scratch") == '`pretrained = "none"`'


def test_where_photos_come_from_names_the_folders_and_the_notebooks():
    said = messages.WHERE_PHOTOS_COME_FROM
    for needed in ("data/raw/with_mask/", "data/raw/without_mask/", "01_scrape.ipynb", "02_clean.ipynb",
                   "selfiemask clean all", "data/clean/"):
        assert needed in said
