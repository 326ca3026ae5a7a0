"""The Brain every recipe derives from: no lost gradients, work for every process.

SpeechBrain 1.1.2's :class:`speechbrain.Brain` has two ways to train nothing
without saying so, which :class:`RobustBrain` closes:

* **gradient accumulation across an epoch end**: ``fit_batch`` steps the
  optimiser when ``step % grad_accumulation_factor == 0`` and ``_fit_train``
  flushes the gradients at the end of every epoch; with a factor of 4 and
  epochs of fewer than 4 batches no step is ever taken (``steps: 0`` epoch
  after epoch), and in general the last ``len % factor`` batches of an epoch
  are thrown away. Here the last batch of an epoch always steps, and the loss
  of every batch is divided by the size of *its* accumulation group (the
  last group of an epoch may be shorter), so each step applies the mean
  gradient of the batches it accumulated.
* **DDP with fewer batches than processes**: SpeechBrain's
  ``DistributedSamplerWrapper`` hands a process that gets a single batch the
  batch's indices one by one (``TypeError: 'int' object is not iterable`` in
  the DataLoader). Here a batch sampler under DDP is split by
  :class:`DistributedBatchSampler`: every process gets the same number of
  whole batches, the list padded by repeating batches from its start (as
  PyTorch's ``DistributedSampler`` pads samples), so every process has work
  and they step together.

It also makes silent failures visible:

* **non-finite losses**: a batch whose loss is NaN or infinite is counted and
  skipped (no backward pass; under DDP, where every process must take part
  in the backward pass, the optimiser step whose gradients it poisoned is
  skipped instead), up to SpeechBrain's ``--nonfinite_patience`` per epoch;
  the count is in the epoch's log line (``train_logger``) and the summary;
* **a run summary** at the end of ``fit``: epochs, optimiser steps, batches,
  non-finite batches and skipped steps, utterances left out of the training
  and validation sets by cause (duration limits, unreadable audio; from
  :func:`~speechbrain_wsm.recipe.dataio.manifest_dataset`), wall time and
  peak memory, in the log's last lines and in
  ``<output_folder>/run_summary.json``.

Subclass it as you would ``speechbrain.Brain``; the recipes' ``CTCBrain``
and the wav2vec 2.0 pretraining Brain do.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import sys
import time

import speechbrain as sb
import torch
from torch.utils.data import IterableDataset, Sampler

__all__ = [
    "DistributedBatchSampler",
    "RobustBrain",
    "accumulation_group_size",
    "peak_memory_mb",
]


def peak_memory_mb(device: str | torch.device) -> float:
    """Peak memory so far: the CUDA allocator's peak, or this process's peak RSS (MB)."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


logger = logging.getLogger(__name__)


def accumulation_group_size(step: int, factor: int, epoch_batches: int | None) -> int:
    """How many batches the optimiser step that batch ``step`` belongs to averages.

    Batches ``1..factor`` form the first group, ``factor+1..2*factor`` the
    next, and so on; the last group of an epoch holds what is left.

    Arguments
    ---------
    step : int
        The batch's position in the epoch, from 1.
    factor : int
        ``grad_accumulation_factor``.
    epoch_batches : int, optional
        Batches in the epoch (None: unknown, every group is full).

    Example
    -------
    >>> [accumulation_group_size(s, 4, 6) for s in range(1, 7)]
    [4, 4, 4, 4, 2, 2]
    >>> [accumulation_group_size(s, 4, 2) for s in (1, 2)]
    [2, 2]
    """
    if epoch_batches is None:
        return factor
    first = (step - 1) // factor * factor + 1
    return max(1, min(factor, epoch_batches - first + 1))


class DistributedBatchSampler(Sampler):
    """Split a batch sampler's batches across DDP processes, whole and padded.

    Every process gets ``ceil(batches / processes)`` batches: batch ``i`` of
    the (padded) list goes to process ``i % processes``. When the batches do
    not divide evenly, the list is padded by repeating its first batches, so
    that no process runs out early (DDP would wait for it forever) and none
    starts with nothing. Every process must build the same batches (a
    seeded sampler such as SpeechBrain's ``DynamicBatchSampler``).

    Arguments
    ---------
    batch_sampler : Sampler
        Yields batches (lists of dataset indices); ``set_epoch`` is passed on.
    num_replicas : int, optional
        Processes (default: the DDP world size, else ``$WORLD_SIZE``).
    rank : int, optional
        This process (default: the DDP rank, else ``$RANK``).

    Example
    -------
    >>> batches = [[0, 1], [2]]
    >>> [list(DistributedBatchSampler(batches, 4, r)) for r in range(4)]
    [[[0, 1]], [[2]], [[0, 1]], [[2]]]
    """

    def __init__(self, batch_sampler, num_replicas=None, rank=None):
        distributed = torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        )
        if num_replicas is None:
            num_replicas = (
                torch.distributed.get_world_size()
                if distributed
                else int(os.environ.get("WORLD_SIZE", 1))
            )
        if rank is None:
            rank = (
                torch.distributed.get_rank()
                if distributed
                else int(os.environ.get("RANK", 0))
            )
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank {rank} is not one of num_replicas={num_replicas} processes"
            )
        self.batch_sampler = batch_sampler
        self.num_replicas, self.rank = int(num_replicas), int(rank)

    def __len__(self) -> int:
        return math.ceil(len(self.batch_sampler) / self.num_replicas)

    def __iter__(self):
        batches = [list(b) for b in self.batch_sampler]
        if not batches:
            raise ValueError(
                f"the training set makes 0 batches for {self.num_replicas} "
                "processes: check the manifest and the duration limits"
            )
        total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        if total > len(batches) and self.rank == 0:
            logger.info(
                "%d batches for %d processes: repeating %d batch(es) so that "
                "every process gets %d",
                len(batches),
                self.num_replicas,
                total - len(batches),
                total // self.num_replicas,
            )
        padded = [batches[i % len(batches)] for i in range(total)]
        return iter(padded[self.rank :: self.num_replicas])

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the wrapped sampler (its shuffling seed)."""
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)


class RobustBrain(sb.Brain):
    """``speechbrain.Brain`` whose epochs never end with unapplied gradients,
    and whose DDP processes all get whole batches (see the module docstring)."""

    _epoch_batches: int | None = None

    def _counts(self) -> dict:
        if not hasattr(self, "_run_counts"):
            self._run_counts = {
                "batches": 0,
                "nonfinite_batches": 0,
                "skipped_steps": 0,
            }
        return self._run_counts

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """SpeechBrain's ``fit``, then the run summary (see the module docstring)."""
        start = time.time()
        self._counts()
        try:
            return super().fit(epoch_counter, train_set, valid_set, *args, **kwargs)
        finally:
            self.write_run_summary(
                time.time() - start, {"train": train_set, "valid": valid_set}
            )

    def run_summary(self, seconds: float, datasets: dict) -> dict:
        """What the run did, in numbers (see :meth:`write_run_summary`)."""
        hparams = getattr(self, "hparams", None)
        counter = getattr(hparams, "epoch_counter", None)
        left_out = {
            name: dict(getattr(data, "left_out", {}))
            for name, data in datasets.items()
            if getattr(data, "left_out", None)
        }
        return {
            "epochs": getattr(counter, "current", None),
            "optimizer_steps": self.optimizer_step,
            **self._counts(),
            "utterances_left_out": left_out,
            "wall_seconds": round(seconds, 1),
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "device": str(self.device),
        }

    def write_run_summary(self, seconds: float, datasets: dict) -> None:
        """Log the run summary and write ``<output_folder>/run_summary.json``."""
        summary = self.run_summary(seconds, datasets)
        if not sb.utils.distributed.if_main_process():
            return
        parts = [
            f"{k}: {v}"
            for k, v in summary.items()
            if k not in ("utterances_left_out", "device")
        ]
        logger.info("run summary: %s", ", ".join(parts))
        for name, causes in summary["utterances_left_out"].items():
            logger.info("run summary: %s utterances left out: %s", name, causes)
        folder = getattr(getattr(self, "hparams", None), "output_folder", None)
        if folder is not None and os.path.isdir(folder):
            with open(os.path.join(folder, "run_summary.json"), "w") as f:
                json.dump(summary, f, indent=1)

    def _fit_train(self, train_set, epoch, enable):
        try:
            self._epoch_batches = len(train_set)
        except TypeError:  # an iterable without a length
            self._epoch_batches = None
        if self._epoch_batches is not None and self.debug:
            self._epoch_batches = min(self._epoch_batches, self.debug_batches)
        super()._fit_train(train_set, epoch, enable)

    def should_step_now(self) -> bool:
        """Whether the batch being fitted (``self.step``) ends an accumulation group."""
        factor = self.grad_accumulation_factor
        last = self._epoch_batches is not None and self.step >= self._epoch_batches
        return self.step % factor == 0 or last

    def fit_batch(self, batch):
        """SpeechBrain's ``fit_batch``, stepping at the epoch's end too.

        The loss is divided by the size of the batch's accumulation group
        (:func:`accumulation_group_size`), so a short last group is a mean,
        not a fraction of one.
        """
        should_step = self.should_step_now()
        group = accumulation_group_size(
            self.step, self.grad_accumulation_factor, self._epoch_batches
        )
        counts = self._counts()
        counts["batches"] += 1
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            scaled_loss = self.scaler.scale(loss / group)
            finite = bool(torch.isfinite(loss.detach()))
            self.check_loss_isfinite(scaled_loss)  # counts; raises past patience
            if not finite:
                counts["nonfinite_batches"] += 1
                logger.warning(
                    "non-finite loss (%s) in training batch %d: skipped",
                    float(loss.detach()),
                    self.step,
                )
            if finite or self.distributed_launch:  # DDP: every process backwards
                scaled_loss.backward()
        if should_step:
            state = self._gradient_state()
            if state == "finite":
                self.optimizers_step()
            else:
                counts["skipped_steps"] += 1
                logger.warning("%s gradients: optimiser step skipped", state)
                self.zero_grad(set_to_none=True)
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def _gradient_state(self) -> str:
        """``"finite"``, ``"non-finite"``, or ``"no"`` (every batch was skipped).

        With fp16 the grad scaler skips steps with inf/NaN gradients itself.
        """
        grads = [p.grad for p in self.modules.parameters() if p.grad is not None]
        if not grads:
            return "no"
        if self.scaler.is_enabled() or all(
            bool(torch.isfinite(g).all()) for g in grads
        ):
            return "finite"
        return "non-finite"

    def nonfinite_meta(self) -> dict:
        """``{"nonfinite_batches": n}`` for the epoch's log line when n > 0."""
        n = getattr(self, "nonfinite_count", 0)
        return {"nonfinite_batches": n} if n else {}

    def _train_loader_specifics(self, dataset, loader_kwargs):
        batch_sampler = loader_kwargs.get("batch_sampler")
        if (
            self.distributed_launch
            and batch_sampler is not None
            and not isinstance(dataset, IterableDataset)
        ):
            self.train_sampler = DistributedBatchSampler(batch_sampler, rank=self.rank)
            return {**loader_kwargs, "batch_sampler": self.train_sampler}
        return super()._train_loader_specifics(dataset, loader_kwargs)
