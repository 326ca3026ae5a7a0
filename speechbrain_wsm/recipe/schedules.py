"""Learning-rate schedules by optimizer step, independent of validation metrics.

A CTC model first sits on the *blank plateau*: it outputs only blanks, the
loss stalls near its unigram entropy, and WER and CER stay at 100 % for a
while before learning starts. A schedule that anneals on a validation metric
(NewBob on WER) sees no improvement during the plateau and divides the rate
epoch after epoch, so the model may never leave it. The schedules here depend
only on the step count: a warm-up, a long hold at the peak rate, then a
decay, as wav2vec 2.0 fine-tuning does (fairseq's tri-stage schedule).

The schedule is a *multiplier*: every parameter group keeps its own peak
rate (the ``lr`` it was built with), so one schedule serves several
optimisers with different rates (new blocks and pretrained weights).

:class:`StepLimitedWarmCoolDecay` is the wav2vec 2.0 pretraining schedule
(SpeechBrain's warm-up, slow decay, linear cool-down to 0).

**One rule for every schedule**: a schedule spans the optimizer steps the run
will take, :func:`planned_steps` (``number_of_epochs`` times the optimizer
steps of an epoch, or ``optimizer_step_limit``, whichever is smaller), set
when training starts and logged. Its phases (``warmup``, ``hold``,
``cooldown``) are shares of that length when below 1 and step counts when 1
or more (:func:`steps_of`). A run shortened with ``--number_of_epochs=2``
alone therefore warms up over 10 % of its own steps, not over the 30 000 steps
of the full-length run.
"""

from __future__ import annotations

import logging
import math

from speechbrain.nnet.schedulers import LinearWarmupScheduler, WarmCoolDecayLRSchedule
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from speechbrain_wsm.errors import UserValueError

__all__ = [
    "LinearWarmupDecay",
    "fit_phases",
    "StepLimitedWarmCoolDecay",
    "TriStageSchedule",
    "planned_steps",
    "steps_of",
]

logger = logging.getLogger(__name__)


def planned_steps(
    epochs: int, steps_per_epoch: int | None, step_limit: int | None
) -> int:
    """The optimizer steps a run will take: epochs x steps, or the step limit if smaller.

    Arguments
    ---------
    epochs : int
        ``number_of_epochs``.
    steps_per_epoch : int, optional
        Optimizer steps of one epoch (batches / accumulation); None: unknown.
    step_limit : int, optional
        ``optimizer_step_limit`` (None: no limit).

    Example
    -------
    >>> planned_steps(2, 50, 300000), planned_steps(1000, 50, 200), planned_steps(3, None, 90)
    (100, 200, 90)
    """
    by_epochs = None if steps_per_epoch is None else int(epochs) * int(steps_per_epoch)
    limit = None if step_limit is None else int(step_limit)
    found = [n for n in (by_epochs, limit) if n is not None]
    if not found:
        raise ValueError("a run needs number_of_epochs x batches or a step limit")
    return max(1, min(found))


def steps_of(value: float, total_steps: int, name: str) -> int:
    """A schedule length as steps: a share of ``total_steps`` if below 1, else steps.

    Raises
    ------
    ValueError
        If ``value`` is negative, or a step count larger than ``total_steps``.

    Example
    -------
    >>> steps_of(0.1, 300000, "warmup"), steps_of(0.1, 200, "warmup"), steps_of(25, 200, "warmup")
    (30000, 20, 25)
    """
    if value < 0:
        raise UserValueError(f"{name} must be >= 0, got {value}")
    if value < 1:
        return int(round(value * total_steps))
    if value > total_steps:
        raise UserValueError(
            f"{name}={value:g} steps is longer than the run ({total_steps} "
            f"steps: number_of_epochs x updates, or optimizer_step_limit): give "
            f"{name} as a share of the run (e.g. --{name}=0.1) or make the run longer"
        )
    return int(value)


def fit_phases(total: int, **phases: float) -> dict[str, int]:
    """The phases of a schedule in steps of a run of ``total`` steps.

    A share (< 1) is a share of ``total``; a step count (>= 1) is kept when
    the phases fit in the run. When step counts add up to more than the run
    (a run shortened with ``--number_of_epochs``), the last phases are
    shortened to fit, with a warning that suggests shares.

    Example
    -------
    >>> fit_phases(200, warmup=0.1, cooldown=0.9)
    {'warmup': 20, 'cooldown': 180}
    >>> fit_phases(120, warmup=20, cooldown=1000)
    {'warmup': 20, 'cooldown': 100}
    """
    steps = {}
    for name, value in phases.items():
        if value < 0:
            raise UserValueError(f"{name} must be >= 0, got {value}")
        steps[name] = int(round(value * total)) if value < 1 else int(value)
    if sum(steps.values()) <= total:
        return steps
    given = ", ".join(f"{k} {v}" for k, v in steps.items())
    left = total
    for name in steps:
        steps[name] = min(steps[name], left)
        left -= steps[name]
    logger.warning(
        "schedule phases of %s steps are longer than this run's %d steps: "
        "shortened to %s (give them as shares of the run, e.g. --warmup=0.1, "
        "to keep their shape)",
        given,
        total,
        ", ".join(f"{k} {v}" for k, v in steps.items()),
    )
    return steps


class StepLimitedWarmCoolDecay(WarmCoolDecayLRSchedule):
    """Warm-up, slow decay, cool-down to 0 at ``total_steps`` (SpeechBrain's
    schedule), with warm-up and cool-down that follow the run's length.

    ``warmup`` and ``cooldown`` below 1 are shares of ``total_steps`` (the
    recipe's ``optimizer_step_limit``), so a run shortened with
    ``--optimizer_step_limit=200`` warms up over 20 steps (0.1), not over the
    full run's 30 000; values of 1 or more are step counts, and a warm-up plus
    cool-down longer than the run is refused at construction.

    Arguments
    ---------
    lr : float
        Peak learning rate.
    warmup, cooldown : float
        Shares of ``total_steps`` (< 1) or step counts (>= 1).
    total_steps : int
        Steps of the run.
    decay_factor, decay_every
        Slow decay between warm-up and cool-down, as SpeechBrain's.

    Example
    -------
    >>> s = StepLimitedWarmCoolDecay(lr=1.0, warmup=0.1, cooldown=0.5, total_steps=200)
    >>> s.warmup, s.cooldown
    (20, 100)
    >>> StepLimitedWarmCoolDecay(lr=1.0, warmup=150, cooldown=100, total_steps=200)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: warmup (150 steps) + cooldown (100 steps) is longer than the run (optimizer_step_limit=200): ...
    """

    def __init__(
        self,
        lr: float,
        warmup: float,
        cooldown: float,
        total_steps: int,
        decay_factor: float = 0.75,
        decay_every: int = 100000,
    ):
        self.given = {"warmup": warmup, "cooldown": cooldown}
        warm, cool, total_steps = self._phases(int(total_steps))
        super().__init__(
            lr, max(warm, 1), max(cool, 1), total_steps, decay_factor, decay_every
        )

    def _phases(self, total_steps: int) -> tuple[int, int, int]:
        if total_steps < 1:
            raise UserValueError(
                f"optimizer_step_limit must be >= 1, got {total_steps}"
            )
        warm = steps_of(self.given["warmup"], total_steps, "warmup")
        cool = steps_of(self.given["cooldown"], total_steps, "cooldown")
        if warm + cool > total_steps:
            raise UserValueError(
                f"warmup ({warm} steps) + cooldown ({cool} steps) is longer than "
                f"the run (optimizer_step_limit={total_steps}): give them as "
                "shares of the run (e.g. --warmup=0.1 --cooldown=0.9)"
            )
        return warm, cool, total_steps

    def set_total_steps(self, total: int) -> None:
        """Span the steps the run will take (:func:`planned_steps`), set at fit start.

        Shares (< 1) follow the new length; step counts (>= 1) that do not
        fit are shortened (:func:`fit_phases`).

        Example
        -------
        >>> s = StepLimitedWarmCoolDecay(lr=1.0, warmup=0.1, cooldown=0.9, total_steps=300000)
        >>> s.set_total_steps(400)  # two epochs of 200 steps
        >>> s.warmup, s.cooldown, s.total_steps
        (40, 360, 400)
        """
        total = int(total)
        if total < 1:
            raise ValueError(f"a run needs at least one step, got {total}")
        steps = fit_phases(total, **self.given)
        self.warmup, self.cooldown = max(steps["warmup"], 1), max(steps["cooldown"], 1)
        self.total_steps = total

    def describe(self) -> str:
        """The phases in steps, for the log."""
        return (
            f"{self.total_steps} steps: warm-up {self.warmup}, "
            f"cool-down {self.cooldown} to 0 at the last step"
        )


class LinearWarmupDecay(LinearWarmupScheduler):
    """Linear warm-up then linear decay to 0 at the run's last step (LASER's).

    SpeechBrain's :class:`~speechbrain.nnet.schedulers.LinearWarmupScheduler`
    under the project's one rule: its length is set at fit start to the
    steps the run will take (:func:`planned_steps`), and ``warmup`` is a
    share of it (< 1) or a step count (>= 1) that must fit in it.

    Example
    -------
    >>> s = LinearWarmupDecay(initial_value=1.0, warmup=1000, total_steps=3600)
    >>> s.set_total_steps(2000)
    >>> s.calculate_lr(500), s.calculate_lr(1500), s.calculate_lr(2000)
    (0.5, 0.5, 0.0)
    """

    def __init__(self, initial_value: float, warmup: float, total_steps: int):
        self.warmup = warmup
        super().__init__(
            initial_value,
            steps_of(warmup, int(total_steps), "warmup_steps"),
            total_steps,
        )

    def set_total_steps(self, total: int) -> None:
        """Span ``total`` steps (the run's); the warm-up share follows it."""
        steps = fit_phases(int(total), warmup_steps=self.warmup)
        self.num_warmup_steps = steps["warmup_steps"]
        self.num_training_steps = int(total)

    def describe(self) -> str:
        """The phases in steps, for the log."""
        return (
            f"{self.num_training_steps} steps: warm-up {self.num_warmup_steps}, "
            "linear decay to 0 at the last step"
        )


@register_checkpoint_hooks
class TriStageSchedule:
    """Warm-up, hold, decay: a learning-rate multiplier by optimizer step.

    The multiplier rises linearly from ``init_scale`` to 1 over the first
    ``warmup`` share of the steps, stays at 1 for the next ``hold`` share, then
    decays exponentially to ``final_scale`` at the last step (and stays there).
    The number of steps is set when training starts
    (:meth:`set_total_steps`: the steps the run will take, :func:`planned_steps`), so the
    same YAML fits any data size. The step count is saved in checkpoints: a
    resumed run continues the schedule where it stopped.

    Arguments
    ---------
    warmup : float
        Share of the steps spent warming up (< 1), or a number of steps (>= 1).
    hold : float
        Share of the steps at the peak rate (< 1), or a number of steps (>= 1).
    init_scale : float
        Multiplier at step 0.
    final_scale : float
        Multiplier at the last step.

    Example
    -------
    >>> s = TriStageSchedule(warmup=0.1, hold=0.4, init_scale=0.0, final_scale=0.01)
    >>> s.set_total_steps(100)
    >>> [round(s.scale(n), 3) for n in (0, 5, 10, 50, 100, 200)]
    [0.0, 0.5, 1.0, 1.0, 0.01, 0.01]
    """

    def __init__(
        self,
        warmup: float = 0.1,
        hold: float = 0.4,
        init_scale: float = 0.01,
        final_scale: float = 0.05,
    ):
        shares = warmup < 1 and hold < 1
        if not (0 <= warmup and 0 <= hold and (warmup + hold <= 1 or not shares)):
            raise UserValueError(
                f"warmup ({warmup}) and hold ({hold}) must be shares of the "
                "steps summing to at most 1, or step counts (>= 1)"
            )
        if not (0 <= init_scale <= 1 and 0 < final_scale <= 1):
            raise UserValueError(
                f"init_scale ({init_scale}) must be in [0, 1] and final_scale "
                f"({final_scale}) in (0, 1]"
            )
        self.warmup, self.hold = warmup, hold
        self.init_scale, self.final_scale = init_scale, final_scale
        self.total_steps: int | None = None
        self.step = 0

    def set_total_steps(self, total: int) -> None:
        """Fix the length of the schedule (:func:`planned_steps` of the run).

        Step counts (>= 1) of warm-up and hold that do not fit are shortened
        (:func:`fit_phases`).
        """
        if total < 1:
            raise ValueError(f"a run needs at least one step, got {total}")
        steps = fit_phases(int(total), warmup=self.warmup, hold=self.hold)
        self.total_steps = int(total)
        self._warm, self._hold = steps["warmup"], steps["hold"]

    def describe(self) -> str:
        """The phases in steps, for the log."""
        return (
            f"{self.total_steps} steps: warm-up {self._warm}, hold {self._hold}, "
            f"decay to {self.final_scale:g} x the peak over the rest"
        )

    def scale(self, step: int) -> float:
        """The multiplier at ``step``."""
        if self.total_steps is None:
            raise RuntimeError("call set_total_steps before using the schedule")
        warm = float(self._warm) if self.warmup >= 1 else self.warmup * self.total_steps
        hold = float(self._hold) if self.hold >= 1 else self.hold * self.total_steps
        hold_end = warm + hold
        if step < warm:
            return self.init_scale + (1 - self.init_scale) * step / warm
        if step < hold_end:
            return 1.0
        decay = max(self.total_steps - hold_end, 1.0)
        progress = min((step - hold_end) / decay, 1.0)
        return math.exp(math.log(self.final_scale) * progress)

    def apply(self, optimizers) -> float:
        """Set every parameter group to its peak rate times the current multiplier.

        A group's peak rate is its ``lr`` the first time it is seen (kept as
        ``peak_lr`` in the group).
        """
        factor = self.scale(self.step)
        for opt in optimizers:
            for group in opt.param_groups:
                group.setdefault("peak_lr", group["lr"])
                group["lr"] = group["peak_lr"] * factor
        return factor

    def advance(self, optimizers) -> float:
        """Count one optimizer step, then :meth:`apply`; returns the multiplier."""
        self.step += 1
        return self.apply(optimizers)

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(self.step))

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        del end_of_epoch
        with open(path, encoding="utf-8") as f:
            self.step = int(f.read().strip())
