"""The base of every recipe Brain: optimisers by parameter group, step schedule, costs.

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

A subclass names its trained module in :attr:`RecipeBrain.model_key` and
writes the objective and the stage ends.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time

import speechbrain as sb
import torch

__all__ = ["RecipeBrain", "peak_memory_mb"]


def peak_memory_mb(device: str | torch.device) -> float:
    """Peak memory so far: the CUDA allocator's peak, or this process's peak RSS (MB)."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class RecipeBrain(sb.Brain):
    """A Brain training ``modules[model_key]`` with one optimiser per parameter group.

    Hyperparameters read: ``<group>_opt_class`` for every parameter group,
    and optionally ``lr_schedule``, ``epoch_counter``, ``output_folder``.
    """

    #: the key of the trained module in ``modules``
    model_key = "model"

    def model(self) -> torch.nn.Module:
        """The trained module, unwrapped from DDP."""
        module = self.modules[self.model_key]
        return getattr(module, "module", module)

    # -- optimisation --------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by optimiser name; one group, ``model``, by default."""
        return {"model": [p for p in self.model().parameters() if p.requires_grad]}

    def init_optimizers(self):
        self.optimizers_dict = {}
        for name, params in self.parameter_groups().items():
            if params:
                opt = getattr(self.hparams, f"{name}_opt_class")(params)
                self.optimizers_dict[f"{name}_optimizer"] = opt
        if self.checkpointer is not None:
            for key, opt in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(key, opt)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        if stage == sb.Stage.TRAIN:
            self._steps_per_epoch = math.ceil(
                len(loader) / self.grad_accumulation_factor
            )
        return loader

    def on_fit_start(self):
        super().on_fit_start()  # optimisers built, last checkpoint recovered
        schedule = getattr(self.hparams, "lr_schedule", None)
        if schedule is not None:
            epochs = self.hparams.epoch_counter.limit
            schedule.set_total_steps(epochs * getattr(self, "_steps_per_epoch", 1))
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
