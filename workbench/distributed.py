"""Several training processes (``torchrun``) as one job: the few collectives the trainer needs.

Launch any training script, or ``workbench train-bank``, with ``torchrun``::

    torchrun --nproc-per-node 4 -m workbench.cli train-bank speakers/ --out bank.safetensors

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
address; :func:`init_from_env` joins the process group (NCCL on GPUs, Gloo on
CPUs). Every process then holds the whole frozen base model and the whole
Submodel bank, and :class:`~workbench.trainer.Trainer` splits each batch
across processes: process ``r`` runs examples ``r, r + W, r + 2W, ...`` of the
batch (``W`` = world size), the gradients are summed across processes and
divided by the batch size, so a step is the same step as in one process
(the same batch, the same mean loss) up to floating-point summation order.
This holds when an utterance's output does not depend on the rest of its batch:
true of the built-in model and of transformers models that take an attention
mask. Whisper's loss is a mean over the batch's tokens, so there the shares are
weighted by utterances where one process would weight by tokens; wav2vec2 models
with group norm run without an attention mask, so their outputs depend on how
much padding a (smaller) share has.
Validation is split the same way and gathered, so every process takes the
same early-stopping and checkpoint decisions.

Without a process group every function here is the one-process identity, so
the trainer calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from workbench.errors import TrainingError

__all__ = [
    "all_gather_objects",
    "any_true",
    "broadcast_parameters",
    "init_from_env",
    "is_main",
    "rank_and_size",
    "shutdown",
    "sum_gradients",
    "sum_scalars",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if not _active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank_and_size()[0] == 0


def init_from_env(device: str = "auto") -> str:
    """Join the ``torchrun`` process group if this process was started by it.

    Args:
        device: ``"auto"`` (this process's GPU when there are GPUs, else the CPU),
            ``"cpu"`` or ``"cuda"``.

    Returns:
        the torch device this process should use, e.g. ``"cuda:1"`` or ``"cpu"``.
        Without ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) nothing is
        joined and the device is ``"cuda"``/``"cpu"`` as asked.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for, but torch sees no GPU here; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return "cuda" if use_cuda else "cpu"
    if not dist.is_available():
        raise TrainingError("this torch build has no torch.distributed; run one process, without torchrun")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise TrainingError(
                f"process {local} has no GPU of its own ({torch.cuda.device_count()} visible): start at most "
                "as many processes per node as there are GPUs (torchrun --nproc-per-node)")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return f"cuda:{local}" if use_cuda else "cpu"


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group (if any).

    Args:
        wait: first wait until every process has arrived here (the normal end of a job).
            After an error pass False: the others are then stopped by a broken
            connection (and ``torchrun`` ends the job) instead of waiting for a
            process that will never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def _device_of(tensors: Sequence[torch.Tensor]) -> torch.device:
    # NCCL reduces CUDA tensors only; Gloo takes CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensors[0].device if tensors else torch.device("cpu")


def sum_scalars(*values: float) -> list[float]:
    """Each value summed over all processes (float64); the values themselves in one process."""
    if not _active():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=_device_of([]))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def any_true(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (e.g. one process was asked to stop)."""
    if not _active():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_device_of([]))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_gradients(params: Sequence[torch.nn.Parameter], scale: float = 1.0) -> None:
    """Sum every parameter's ``.grad`` over all processes, in place, then multiply by ``scale``.

    A parameter without a gradient in this process counts as zeros (a process whose
    share of the batch was empty); one without a gradient in *any* process keeps
    ``grad = None``, as it would in one process (so the optimizer skips it). The
    gradients travel as one flat buffer per dtype.
    """
    if not _active():
        if scale != 1.0:
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=_device_of([]))
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    params = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.mul_(scale)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
            offset += n


def broadcast_parameters(params: Sequence[torch.Tensor]) -> None:
    """Copy rank 0's values of ``params`` to every process (the same start everywhere)."""
    if not _active():
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
