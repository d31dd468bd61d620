"""Distributed training and prediction: two CPU processes over gloo, started the way users start them.

The helpers are checked in one process; the pipeline is run under ``torchrun`` and
``accelerate launch`` as subprocesses (each with a timeout, so a hang fails the
test instead of the whole run) and compared with the single-process command.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from selfiemask import distributed as dist
from selfiemask.synthetic import make_dataset, mask_like

TIMEOUT = 300  # seconds for one launch; a tiny run takes well under a minute on 2 cores


# -- helpers, in one process ---------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_every_item_once_in_order(world):
    for n in range(0, 23):
        shards = [dist.shard_range(n, r, world) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(n))
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError):
        dist.shard_range(4, 2, 2)


def test_merge_restores_input_order_and_refuses_lost_or_doubled_rows():
    # Input 1 has two rows (two faces); parts arrive in rank order, rows within a part in any order.
    parts = [[(1, "1a"), (0, "0"), (1, "1b")], [(3, "3"), (2, "2")]]
    assert dist.merge_parts(parts, 4) == ["0", "1a", "1b", "2", "3"]
    assert dist.merge_parts([[], [(0, "x")]], 1) == ["x"]
    with pytest.raises(ValueError, match="no row"):
        dist.merge_parts([[(0, "0")], [(2, "2")]], 3)
    with pytest.raises(ValueError, match="parts 0 and 1"):
        dist.merge_parts([[(0, "0"), (1, "1")], [(1, "1")]], 2)
    with pytest.raises(ValueError, match="outside"):
        dist.merge_parts([[(0, "0"), (5, "5")]], 1)


def test_one_process_needs_no_launcher(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(var, raising=False)
    assert (dist.world_size(), dist.rank(), dist.is_main(), dist.active()) == (1, 0, True, False)
    assert dist.on_main(lambda a, b=0: a + b, 2, b=3) == 5
    assert dist.gather("part") == ["part"] and dist.all_gather({"x": 1}) == [{"x": 1}]
    dist.barrier()
    dist.shutdown()
    learn = object()  # not a Learner: fastai must not be touched at all
    with dist.distrib_ctx(learn) as same:
        assert same is learn
    with pytest.warns(UserWarning, match="no launcher"):
        assert dist.init() is False
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    with pytest.warns(UserWarning, match="--multi_gpu"):
        assert dist.setup(True) is False
    assert dist.setup(False) is False


def test_a_launched_process_without_the_flag_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="add --distributed"):
        dist.setup(False)


def test_single_process_view_is_restored(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(KeyError), dist.single_process():
        assert (os.environ["WORLD_SIZE"], os.environ["RANK"]) == ("1", "0")
        raise KeyError
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"]) == ("2", "1")
    monkeypatch.delenv("RANK")
    with dist.single_process():
        pass
    assert "RANK" not in os.environ


# -- launching ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a launcher in its own process group: on a timeout its workers are killed too, not orphaned."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HOME": str(cwd / "hf"), "OMP_NUM_THREADS": "1", **(env or {})}  # HF_HOME: no user accelerate config
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(var, None)
    cmd = [str(c) for c in cmd]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", 2, "--master_port", free_port(),
                *args], cwd, **kw)


def accelerate_launch(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    # --multi_gpu is Accelerate's multi-process launcher; without GPUs the processes use gloo on the CPU.
    return run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", 2,
                "--num_machines", 1, "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", free_port(), *args], cwd, **kw)


def test_steps_on_the_main_process_and_their_failures(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(textwrap.dedent("""
        import os, tempfile
        from selfiemask import distributed as dist

        def print(*words):  # one write per line: two processes share this pipe
            os.write(1, (" ".join(map(str, words)) + "\\n").encode())

        assert dist.init()
        print("rank", dist.rank(), "pid", os.getpid(), "main's answer", dist.on_main(os.getpid))
        dist.on_main(tempfile.mkstemp, dir="made", per_node=True)  # once per machine: here, once
        try:
            dist.on_main(lambda: 1 / 0)
        except ZeroDivisionError:
            print("main: raised")
        except dist.MainProcessFailed as e:
            print(f"other: stopped ({e})")
        dist.shutdown()
        print("left the group" if not dist.active() else "still in the group")
    """))
    (tmp_path / "made").mkdir()
    # A process left waiting would time out in its collective after a minute instead of three hours.
    res = torchrun(script, cwd=tmp_path, env={dist.TIMEOUT_ENV: "1"}, timeout=150)
    assert res.returncode == 0, res.stderr[-4000:]
    seen = sorted(line.split() for line in res.stdout.splitlines() if line.startswith("rank "))
    assert [s[1] for s in seen] == ["0", "1"]
    main_pid = seen[0][3]
    assert [s[-1] for s in seen] == [main_pid, main_pid]  # rank 0's result, on both
    assert len(list((tmp_path / "made").iterdir())) == 1
    assert "main: raised" in res.stdout
    assert "other: stopped (the main process failed: ZeroDivisionError" in res.stdout
    assert res.stdout.count("left the group") == 2


PROBE = """
import json, os, sys

import torch.distributed as td
from fastai.callback.core import Callback

import selfiemask.training as training
from selfiemask.commands import main


class Probe(Callback):
    "What each process saw of the fit: the wrapping, its share of batches, and its weights at the end."
    order = 95

    def before_train(self):
        full = getattr(self.dl, "dl", self.dl)
        self.seen = {"model": type(self.learn.model).__name__, "dl": type(self.dl).__name__,
                     "batches": len(self.dl), "full_batches": len(full),
                     "backend": td.get_backend(), "world": td.get_world_size()}

    def after_fit(self):
        self.seen["weights"] = sum(p.detach().double().sum().item() for p in self.learn.model.parameters())
        with open(os.path.join(os.environ["PROBE_DIR"], f"rank{os.environ['RANK']}.json"), "w") as f:
            json.dump(self.seen, f)


real_train = training.train


def train(cfg):
    cfg.callbacks.append(Probe())
    return real_train(cfg)


training.train = train
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    """``selfiemask train --distributed`` under torchrun, 2 processes, on 32 generated 32-px photos."""
    tmp = tmp_path_factory.mktemp("dist_train")
    data = make_dataset(tmp / "data", per_class=16, size=32)
    (tmp / "probe.py").write_text(PROBE)
    (tmp / "probes").mkdir()
    out = tmp / "model" / "export.pkl"
    res = torchrun(tmp / "probe.py", "train", data, "--distributed", "--epochs", 1, "--size", 32, "--bs", 8,
                   "--no-pretrained", "--crop-cache", tmp / "crops", "--out", out, cwd=tmp,
                   env={"PROBE_DIR": str(tmp / "probes")})
    assert res.returncode == 0, res.stderr[-4000:]
    probes = [json.loads((tmp / "probes" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return out, res, probes, tmp


def test_distributed_training_runs_ddp_and_exports_once(dist_run):
    out, res, probes, tmp = dist_run
    # Both processes trained one DDP model on half of the batches each, over gloo.
    for p in probes:
        assert (p["model"], p["dl"], p["backend"], p["world"]) == ("DistributedDataParallel", "DistributedDL",
                                                                   "gloo", 2), p
        assert p["batches"] == math.ceil(p["full_batches"] / 2)
    # Same weights at the end: gradients were averaged and both used the one learning rate of lr_find.
    assert probes[0]["weights"] == pytest.approx(probes[1]["weights"], rel=1e-9, abs=1e-9)
    # Only the main process exported, reported and wrote the card; nothing half-written is left.
    assert sorted(q.name for q in out.parent.iterdir()) == [
        "export.confusion.png", "export.int8.onnx", "export.json", "export.lr_find.png", "export.onnx", "export.pkl",
        "export.top_losses.png"]  # the graphs too, once
    assert res.stdout.count("validation accuracy") == 1
    assert not list(tmp.rglob("*.tmp")) and not list(tmp.rglob(".*.work"))
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["world_size"] == 2
    assert card["classes"] == ["with_mask", "without_mask"]
    # The same split as one process: validation is the seeded hash split of the crop folder.
    from selfiemask.data import validation_items

    assert card["training"]["valid_images"] == len(validation_items(tmp / "crops")) == card["validation"]["n"]
    assert card["training"]["train_images"] + card["training"]["valid_images"] == 32


def test_distributed_learner_loads_and_predicts_like_any_other(dist_run):
    from selfiemask.predict import Classifier

    out, _, _, tmp = dist_run
    clf = Classifier(out, engine="torch")  # checks the sha256 in the card, then load_learner; the learner's model
    photos = sorted((tmp / "data").rglob("*.jpg"))[::5]
    results = clf.analyze_files(photos)
    assert [r.path for r in results] == [str(p) for p in photos]
    for r in results:
        v = r.main
        assert v.label in {"with_mask", "without_mask"} and not r.error
        assert sum(v.probs.values()) == pytest.approx(1, abs=1e-5) and v.confidence == max(v.probs.values())
    # fastai's own predict path agrees with the batched one, as for a single-process export.
    _, _, probs = clf.learn.predict(photos[0])
    assert float(probs.max()) == pytest.approx(results[0].main.confidence, abs=1e-4)


@pytest.fixture(scope="module")
def predict_folder(tmp_path_factory, three_faces):
    """Eleven inputs (an odd number: unequal shards), unreadable files, a nested one, one photo with 3 faces."""
    import random

    d = tmp_path_factory.mktemp("dist_predict")
    rng = random.Random(3)
    for i in range(7):
        mask_like(32, i % 2 == 0, rng).save(d / f"p{i}.jpg")
    (d / "sub").mkdir()
    mask_like(32, False, rng).save(d / "sub" / "nested.png")
    three_faces.save(d / "group.jpg")
    (d / "text.jpg").write_text("not a photo")
    (d / "empty.jpg").write_bytes(b"")
    return d


def single_rows(model: Path, folder: Path, *flags) -> list[dict]:
    res = run([sys.executable, "-m", "selfiemask", "predict", "--csv", "--model", model, *flags, folder], folder)
    assert res.returncode == 0, res.stderr[-4000:]
    return list(csv.DictReader(io.StringIO(res.stdout)))


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in want]  # input order, nothing lost or doubled
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            if k == "confidence" and w[k]:
                assert float(g[k]) == pytest.approx(float(w[k]), abs=1e-4), (g, w)
            else:
                assert g[k] == w[k], (k, g, w)


@pytest.mark.parametrize("launcher,flags", [(torchrun, ["--faces"]), (accelerate_launch, [])],
                         ids=["torchrun-faces", "accelerate-photos"])
def test_distributed_predict_gives_the_single_process_rows(rule_face_model, predict_folder, launcher, flags):
    # The rule model (tests/rule_model.py): what is compared is the sharding, not one trained model's numbers.
    model = rule_face_model
    want = single_rows(model, predict_folder, *flags)
    res = launcher("-m", "selfiemask", "predict", "--distributed", "--csv", "--model", model, *flags,
                   predict_folder, cwd=predict_folder)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("path,") == 1  # one header: only the main process prints
    got = list(csv.DictReader(io.StringIO(res.stdout)))
    assert_same_rows(got, want)
    assert len({r["path"] for r in want}) == 11
    if "--faces" in flags:
        assert sum(r["path"].endswith("group.jpg") for r in got) >= 2  # several rows for one input stay together
    assert res.stderr.count("2 of 11 file(s) could not be read") == 1
