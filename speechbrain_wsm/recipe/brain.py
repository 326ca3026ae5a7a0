"""The Brains every recipe derives from: :class:`RobustBrain` and :class:`RecipeBrain`.

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
* **a batch sampler's epoch**: ``Brain`` calls ``set_epoch`` on its
  ``train_sampler`` at the start of every epoch, but keeps a
  ``batch_sampler`` of the training loader there only under DDP. Here the
  training ``batch_sampler`` (or its :class:`DistributedBatchSampler`) is the
  ``train_sampler`` either way, so the batches of an epoch depend on its
  number only and a resumed run batches as a straight run would.

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

Subclass it as you would ``speechbrain.Brain``, naming the trained module in
:attr:`RobustBrain.model_key` (:meth:`RobustBrain.model` unwraps it from
DDP); the wav2vec 2.0 pretraining Brain does, and :class:`RecipeBrain`
(below) builds on it.

:class:`RecipeBrain` holds what the CTC recipes (:class:`~.ctc.CTCBrain`)
and the MP3S classification probes (:class:`~.probe.ClassificationBrain`)
share:

* one optimiser per parameter group (:meth:`RecipeBrain.parameter_groups`;
  the optimiser of group ``g`` is built by the YAML's ``g_opt_class`` and
  saved in checkpoints as ``g_optimizer``), unwrapping DDP;
* an optional step schedule (``lr_schedule``, a
  :class:`~speechbrain_wsm.recipe.schedules.TriStageSchedule`): the rate
  depends on the step only;
* the training log's epoch line (rates of every group, seconds per step);
* ``train_cost.json`` in the output folder: optimizer steps so far, the
  model's parameters (all and trainable), mean seconds per step of the last
  epoch and peak memory (CUDA allocator peak, or the process's peak resident
  set on CPU), which sweeps and the demo read.

A subclass names its trained module in :attr:`RobustBrain.model_key` and
writes the objective and the stage ends.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time

import speechbrain as sb
import torch
from torch.utils.data import IterableDataset, Sampler

from speechbrain_wsm.data.audio import skip_undecodable
from speechbrain_wsm.memory import peak_memory_mb
from speechbrain_wsm.recipe.optim import make_optimizer
from speechbrain_wsm.recipe.schedules import planned_steps

__all__ = [
    "DistributedBatchSampler",
    "RecipeBrain",
    "RobustBrain",
    "accumulation_group_size",
]


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


def set_schedule_length(brain: RobustBrain, schedule) -> None:
    """Make ``schedule`` span the steps ``brain``'s run will take, and log it.

    The one schedule rule of the project
    (:mod:`~speechbrain_wsm.recipe.schedules`): the pretraining schedule and
    the CTC recipes' :class:`~speechbrain_wsm.recipe.schedules.TriStageSchedule`
    alike follow ``number_of_epochs`` x the epoch's optimizer steps, or
    ``optimizer_step_limit`` if smaller.
    """
    from speechbrain_wsm.errors import UserValueError

    total = brain.planned_steps()
    try:
        schedule.set_total_steps(total)
    except ValueError as e:
        raise UserValueError(str(e)) from None
    epochs = brain.hparams.epoch_counter.limit
    per_epoch = getattr(brain, "_steps_per_epoch", None)
    logger.info(
        "learning-rate schedule over the %s (%d epochs x %s optimizer steps, "
        "step limit %s)",
        schedule.describe(),
        epochs,
        per_epoch,
        brain.optimizer_step_limit,
    )


class RobustBrain(sb.Brain):
    """``speechbrain.Brain`` whose epochs never end with unapplied gradients,
    and whose DDP processes all get whole batches (see the module docstring)."""

    #: the key of the trained module in ``modules``
    model_key = "model"

    _epoch_batches: int | None = None

    def model(self) -> torch.nn.Module:
        """The trained module (``modules[model_key]``), unwrapped from DDP."""
        module = self.modules[self.model_key]
        return getattr(module, "module", module)

    def init_optimizers(self):
        """SpeechBrain's one optimiser over ``opt_class``, through
        :func:`~speechbrain_wsm.recipe.optim.make_optimizer` (Adam and AdamW
        on their fused kernel)."""
        opt_class = self.opt_class
        if opt_class is not None:
            self.opt_class = functools.partial(make_optimizer, opt_class)
        try:
            super().init_optimizers()
        finally:
            self.opt_class = opt_class

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
        finally:  # also after a failure: what the run did before it
            try:
                self.write_run_summary(
                    time.time() - start, {"train": train_set, "valid": valid_set}
                )
            except (OSError, TypeError, ValueError, AttributeError) as e:
                logger.warning("could not write the run summary: %s", e)

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

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        """SpeechBrain's loader, over a dataset that skips items failing to decode.

        A file whose header reads but whose body does not (a truncated FLAC)
        is skipped and counted in the run summary
        (:func:`~speechbrain_wsm.data.audio.skip_undecodable`) instead of
        ending the epoch.
        """
        dataset = skip_undecodable(dataset)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        if stage == sb.Stage.TRAIN:
            try:
                self._steps_per_epoch = math.ceil(
                    len(loader) / self.grad_accumulation_factor
                )
            except TypeError:  # an iterable without a length
                self._steps_per_epoch = None
        return loader

    def planned_steps(self) -> int:
        """Optimizer steps the run will take: epochs x steps per epoch, or the
        step limit if smaller (:func:`~speechbrain_wsm.recipe.schedules.planned_steps`)."""
        epochs = self.hparams.epoch_counter.limit
        if self.debug:
            epochs = min(epochs, self.debug_epochs)
        return planned_steps(
            epochs, getattr(self, "_steps_per_epoch", None), self.optimizer_step_limit
        )

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
        """SpeechBrain's, but a training ``batch_sampler`` is the ``train_sampler``
        (``set_epoch`` every epoch), split by :class:`DistributedBatchSampler`
        under DDP."""
        batch_sampler = loader_kwargs.get("batch_sampler")
        if batch_sampler is None or isinstance(dataset, IterableDataset):
            return super()._train_loader_specifics(dataset, loader_kwargs)
        if self.distributed_launch:
            self.train_sampler = DistributedBatchSampler(batch_sampler, rank=self.rank)
            return {**loader_kwargs, "batch_sampler": self.train_sampler}
        self.train_sampler = batch_sampler
        return super()._train_loader_specifics(dataset, loader_kwargs)


class RecipeBrain(RobustBrain):
    """A Brain training ``modules[model_key]`` with one optimiser per parameter group.

    Hyperparameters read: ``<group>_opt_class`` for every parameter group,
    and optionally ``lr_schedule``, ``epoch_counter``, ``output_folder``.
    """

    # -- optimisation --------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by optimiser name; one group, ``model``, by default."""
        return {"model": [p for p in self.model().parameters() if p.requires_grad]}

    def init_optimizers(self):
        self.optimizers_dict = {}
        for name, params in self.parameter_groups().items():
            if params:
                opt = make_optimizer(getattr(self.hparams, f"{name}_opt_class"), params)
                self.optimizers_dict[f"{name}_optimizer"] = opt
        if self.checkpointer is not None:
            for key, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(key, opt)

    def on_fit_start(self):
        super().on_fit_start()  # optimisers built, last checkpoint recovered
        schedule = getattr(self.hparams, "lr_schedule", None)
        if schedule is not None:
            set_schedule_length(self, schedule)
            schedule.apply(self.optimizers_dict.values())

    def fit_batch(self, batch):
        start = time.perf_counter()
        loss = super().fit_batch(batch)
        self._batch_seconds.append(time.perf_counter() - start)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        schedule = getattr(self.hparams, "lr_schedule", None)
        if should_step and schedule is not None:
            schedule.advance(self.optimizers_dict.values())

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            self._batch_seconds = []

    def end_train_stage(self, stage_loss) -> None:
        """Keep the training loss for the epoch's log line; write ``train_cost.json``."""
        self.train_stats = {"loss": stage_loss}
        self._write_cost()

    def epoch_meta(self) -> dict:
        """What the training log shows beside the epoch: rates and step time."""
        meta = {
            f"lr_{key[: -len('_optimizer')]}": opt.param_groups[0]["lr"]
            for key, opt in self.optimizers_dict.items()
        }
        if self._batch_seconds:
            meta["step_s"] = round(self._step_seconds(), 3)
        meta.update(self.nonfinite_meta())
        return meta

    def _step_seconds(self) -> float:
        # the first batch of an epoch pays for loader start-up and warm-up
        times = self._batch_seconds[1:] or self._batch_seconds
        return sum(times) / len(times) * self.grad_accumulation_factor

    def _write_cost(self) -> None:
        folder = getattr(self.hparams, "output_folder", None)
        if folder is None or not sb.utils.distributed.if_main_process():
            return
        model = self.model()
        cost = {
            "steps": self.optimizer_step,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(
                p.numel() for p in model.parameters() if p.requires_grad
            ),
            "step_seconds": round(self._step_seconds(), 4)
            if self._batch_seconds
            else None,
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "device": str(self.device),
        }
        with open(os.path.join(folder, "train_cost.json"), "w") as f:
            json.dump(cost, f, indent=1)
