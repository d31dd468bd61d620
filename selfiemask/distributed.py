"""Several processes, one pipeline: the glue between selfiemask and fastai's Accelerate/DDP support.

The engine is not ours: processes are started by ``torchrun`` or ``accelerate launch``,
which describe the run in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``); Accelerate joins the process group (gloo on CPUs, NCCL on GPUs) and
fastai's ``Learner.distrib_ctx`` wraps the model in ``DistributedDataParallel`` and each
DataLoader in a ``DistributedDL`` that hands every process its own share of the batches.
What is here is only what the pipeline needs around that: who is the main process,
running a step on it alone, splitting a file list and putting the pieces back in order.

Every helper degrades to plain single-process behaviour when no launcher started us,
so the same code paths run in a notebook, in the tests and on a cluster.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["MainProcessFailed", "active", "all_gather", "barrier", "distrib_ctx", "gather", "init", "is_main",
           "local_rank", "merge_parts", "on_main", "rank", "setup", "shard_range", "shutdown", "single_process",
           "world_size"]

T = TypeVar("T")


def world_size() -> int:
    """Number of processes in the run, as the launcher announced it (1 without a launcher)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its own machine (0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes files and prints results: rank 0."""
    return rank() == 0


def active() -> bool:
    """True once this process has joined a process group of more than one process (see :func:`init`)."""
    if world_size() <= 1:
        return False  # without importing torch: a one-process `selfiemask predict` may not need it at all
    import torch.distributed as td

    return td.is_available() and td.is_initialized()


#: Minutes a process may wait in one collective. The others wait while one process crops a
#: whole data set (:func:`on_main`), which can take longer than torch's default 30.
TIMEOUT_ENV = "SELFIEMASK_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 180.0


def init() -> bool:
    """Join the launcher's process group through Accelerate; False (and a warning) when run as one process.

    Plain ``torchrun`` on a machine without GPUs does not say "CPU" the way
    ``accelerate launch --cpu`` does (``ACCELERATE_USE_CPU``), and Accelerate
    would then quietly run every process on its own; so we ask for the CPU
    backend (gloo) ourselves whenever CUDA is absent.
    """
    if world_size() <= 1:
        why = ("`accelerate launch --cpu` starts a single process; on CPUs use `accelerate launch --multi_gpu` "
               "or torchrun" if os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true"}
               else "no launcher (torchrun / accelerate launch) started this process")
        warnings.warn(f"--distributed: {why}; running as one process", stacklevel=2)
        return False
    import datetime as dt

    import torch
    from accelerate import PartialState

    timeout = dt.timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN)))
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)
    if state.num_processes != world_size():
        raise RuntimeError(f"Accelerate joined {state.num_processes} process(es) but the launcher announced "
                           f"{world_size()}: check the launch command")
    return True


def setup(requested: bool) -> bool:
    """What the ``--distributed`` flag promises, checked against how the process was started.

    Without the flag under a launcher, every process would train and export on its
    own (or print every row N times), and fastai would fail obscurely on its first
    gather: say so instead. Returns True when this process joined a multi-process run.
    """
    if requested:
        return init()
    if world_size() > 1:
        raise ValueError(f"started as one of {world_size()} processes by a launcher: add --distributed")
    return False


def barrier() -> None:
    """Wait for every process; a no-op in a single process."""
    if active():
        import torch.distributed as td

        td.barrier()


def shutdown() -> None:
    """Wait for every process, then leave the process group; a no-op in a single process.

    Called once the processes have nothing more to exchange, so that none of them
    tears its connections down while another still uses them, and the main process
    can go on alone (validation, export) without the others waiting for it.
    """
    if active():
        import torch.distributed as td

        barrier()
        td.destroy_process_group()


def all_gather(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order, on every process."""
    if not active():
        return [obj]
    import torch.distributed as td

    out: list[Any] = [None] * world_size()
    td.all_gather_object(out, obj)
    return out


def gather(obj: T) -> list[T] | None:
    """Every process's ``obj``, in rank order, on the main process; None elsewhere.

    Objects travel over the process group rather than through part files, so it
    works across nodes without a shared filesystem.
    """
    if not active():
        return [obj]
    import torch.distributed as td

    out: list[Any] | None = [None] * world_size() if is_main() else None
    td.gather_object(obj, out, dst=0)
    return out


@contextmanager
def single_process() -> Iterator[None]:
    """Make fastai believe this is the only process while the main process works alone.

    fastai reads ``WORLD_SIZE`` directly: with it above 1, ``get_preds`` all-gathers
    predictions and ``Learner.load`` waits at a barrier, which would hang a step
    that runs on the main process only (lr_find, validation, export).
    """
    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK")}
    os.environ.update(WORLD_SIZE="1", RANK="0")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class MainProcessFailed(RuntimeError):
    """Raised on the other processes when a step run by the main process(es) alone failed there."""


def on_main(fn: Callable[..., T], *args: Any, per_node: bool = False, **kwargs: Any) -> T:
    """Run ``fn`` on the main process alone and hand its result (rank 0's) to every process.

    For steps whose result must be the same everywhere and that must not run
    twice at once: lr_find must give one learning rate (each process measuring
    its own would let the DDP replicas drift apart). ``per_node``: run it on the
    first process of every machine instead, for steps that fill a cache on local
    disk (face crops, downloaded weights) that every process of that machine reads.
    The others wait; a failure is passed on to every process, so none waits forever.
    """
    if not active():
        return fn(*args, **kwargs)
    runs_here = local_rank() == 0 if per_node else is_main()
    outcome: tuple[str, Any] = ("ok", None)
    error: BaseException | None = None
    if runs_here:
        try:
            with single_process():
                outcome = ("ok", fn(*args, **kwargs))
        except BaseException as e:
            outcome, error = ("error", f"{type(e).__name__}: {e}"), e
    outcomes = all_gather(outcome)  # also the barrier: nobody goes on before every runner is done
    if error is not None:
        raise error
    failed = [msg for status, msg in outcomes if status == "error"]
    if failed:
        raise MainProcessFailed(f"the main process failed: {failed[0]}")
    return outcomes[0][1]


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> range:
    """The contiguous slice of ``n`` items that process ``rank_`` of ``world`` handles.

    The same split as Accelerate's ``split_between_processes``: sizes differ by at
    most one, the first ranks take the extra items, and concatenating the ranges in
    rank order gives ``range(n)`` back; so results merge in input order.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not 0 <= rank_ < world:
        raise ValueError(f"rank {rank_} outside a world of {world}")
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return range(start, start + base + (rank_ < extra))


def merge_parts(parts: list[list[tuple[int, T]]], n: int) -> list[T]:
    """Per-process lists of ``(input index, row)`` merged into one list in input order.

    An input may own several rows (one per face); their order is kept. Raises if
    an input has no row or rows from two processes: a merge that silently lost or
    doubled a photo would be worse than none.
    """
    owner: dict[int, int] = {}
    for p, part in enumerate(parts):
        for i, _ in part:
            if not 0 <= i < n:
                raise ValueError(f"part {p} has a row for input {i}, outside 0..{n - 1}")
            if owner.setdefault(i, p) != p:
                raise ValueError(f"input {i} has rows from parts {owner[i]} and {p}")
    missing = sorted(set(range(n)) - owner.keys())
    if missing:
        raise ValueError(f"{len(missing)} input(s) have no row, first {missing[:5]}")
    rows = [(i, k, row) for part in parts for k, (i, row) in enumerate(part)]
    rows.sort(key=lambda r: (r[0], r[1]))  # k keeps each input's own rows in their order
    return [row for _, _, row in rows]


def _broadcast_on_backend_device(self, t, rank_):
    """fastai's ``DistributedDL._broadcast`` always moves the indices to CUDA (for NCCL); gloo needs the CPU."""
    import torch
    import torch.distributed as td

    device = "cuda" if td.get_backend() == "nccl" else "cpu"
    t = torch.tensor(t, dtype=torch.long, device=device)
    td.broadcast(t, rank_)
    return t.cpu().tolist()


@contextmanager
def distrib_ctx(learn) -> Iterator[Any]:
    """fastai's ``learn.distrib_ctx`` when this process is part of a run, else nothing at all.

    Batch norm is not synchronised (``sync_bn=False``): ``SyncBatchNorm`` runs only on
    GPUs, and with it the export would carry other layer classes than a single-process
    one. On CPUs the sampler indices are broadcast over gloo (see
    :func:`_broadcast_on_backend_device`).
    """
    if not active():
        yield learn
        return
    import torch
    from fastai.distributed import DistributedDL

    cpu = not torch.cuda.is_available()
    original = DistributedDL._broadcast
    DistributedDL._broadcast = _broadcast_on_backend_device
    try:
        with learn.distrib_ctx(sync_bn=False, in_notebook=False, cpu=cpu):
            yield learn
    finally:
        DistributedDL._broadcast = original
