"""Resumable multi-stage runs: stages that skip when done and recipes as subprocesses.

The end-to-end demo (and any sweep a researcher scripts) is a list of
:class:`Stage` objects. :func:`run_stages` runs them in order with a line per
stage and an overall progress bar; a stage whose outputs exist and whose
marker file says it finished is skipped, so a rerun after Ctrl-C or a crash
picks up where it stopped (and the recipes themselves resume from their last
SpeechBrain checkpoint inside a stage).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

__all__ = [
    "Stage",
    "StageFailed",
    "read_train_log",
    "run_recipe",
    "run_recipes",
    "run_stages",
]


class StageFailed(RuntimeError):
    """A stage's command failed; the message ends with its log's last lines."""


@dataclass
class Stage:
    """One step of a pipeline.

    Arguments
    ---------
    name : str
        Unique name, used for the marker file and the log.
    run : callable
        Does the work; may return a dict of facts kept in the marker (shown in
        the final table by the caller).
    outputs : list of paths
        Files or folders that must exist for the stage to count as done.
    """

    name: str
    run: Callable[[], dict | None]
    outputs: Sequence[Path] = field(default_factory=list)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children, in s.

    Beside a stage's wall time, this tells what the stage would take on a
    quiet machine when others share it (CPU seconds / cores busy).
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _marker(workdir: Path, name: str) -> Path:
    return workdir / ".stages" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"


def stage_facts(workdir: Path, name: str) -> dict | None:
    """The facts a finished stage recorded in ``workdir`` (None: not run yet)."""
    marker = _marker(workdir, name)
    return json.loads(marker.read_text()) if marker.exists() else None


def run_stages(
    stages: Sequence[Stage], workdir: Path, redo: Sequence[str] = ()
) -> dict[str, dict]:
    """Run ``stages`` in order, skipping finished ones; returns their facts.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> calls = []
    >>> s = Stage("hello", lambda: calls.append(1) or {"n": len(calls)})
    >>> run_stages([s], d)["hello"]["n"]  # doctest: +ELLIPSIS
    [1/1] hello ...
    [1/1] hello: done in 0 s
    1
    >>> run_stages([s], d)["hello"]["n"], len(calls)  # second run: skipped
    [1/1] hello: done earlier, skipped
    (1, 1)
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".stages").mkdir(exist_ok=True)
    facts: dict[str, dict] = {}
    bar = tqdm(
        total=len(stages), desc="demo", unit="stage", disable=not sys.stderr.isatty()
    )
    for i, stage in enumerate(stages, 1):
        marker = _marker(workdir, stage.name)
        head = f"[{i}/{len(stages)}] {stage.name}"
        done = marker.exists() and all(Path(p).exists() for p in stage.outputs)
        if done and stage.name not in redo:
            facts[stage.name] = json.loads(marker.read_text())
            tqdm.write(f"{head}: done earlier, skipped")
        else:
            tqdm.write(f"{head} ...")
            start, cpu = time.perf_counter(), cpu_seconds()
            info = stage.run() or {}
            missing = [str(p) for p in stage.outputs if not Path(p).exists()]
            if missing:
                raise StageFailed(
                    f"stage {stage.name!r} finished without its outputs: {missing}"
                )
            info = {
                **info,
                "seconds": round(time.perf_counter() - start, 1),
                "cpu_seconds": round(cpu_seconds() - cpu, 1),
            }
            marker.write_text(json.dumps(info, indent=1))
            facts[stage.name] = info
            tqdm.write(f"{head}: done in {info['seconds']:.0f} s")
        bar.update()
    bar.close()
    return facts


def run_recipe(
    script: Path,
    hparams: Path,
    overrides: Mapping[str, object],
    log: Path,
    run_opts: Sequence[str] = (),
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a recipe's ``train.py`` as users do, from its folder, logging to ``log``.

    Overrides are passed as ``--key=value`` (lists and dicts as YAML flow,
    e.g. ``--train_splits=[a, b]``). ``launcher`` (e.g. ``["torchrun",
    "--nproc_per_node=2"]``) starts the script in place of ``sys.executable``.
    On failure raises :class:`StageFailed` with the command and the last 40
    lines of the log. ``env`` adds environment variables
    (``OMP_NUM_THREADS`` ...).
    """

    def fmt(v):
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(str(x) for x in v) + "]"
        return str(v)

    cmd = list(launcher) or [sys.executable]
    cmd += [script.name, str(Path(hparams).relative_to(script.parent))]
    cmd += [f"--{k}={fmt(v)}" for k, v in overrides.items()] + list(run_opts)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ cd {script.parent} && {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(
            cmd, cwd=script.parent, stdout=f, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode:
        tail = "".join(
            log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-40:]
        )
        raise StageFailed(
            f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}"
        )


def run_recipes(jobs: Sequence[Mapping], threads: int | None = None) -> None:
    """Run several recipes at once, each with :func:`run_recipe`'s arguments.

    Small models use CPU cores badly one at a time: two single-threaded runs
    on two cores finish about twice as fast as the same runs one after the
    other with two threads each. Every run gets ``threads`` OpenMP threads
    (default: the CPU count divided by the number of runs, at least one), and
    all of them share the machine alike, so their step times compare.
    Raises :class:`StageFailed` naming every run that failed, after all ended.
    """
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or max(1, (os.cpu_count() or 1) // max(len(jobs), 1))
    env = {"OMP_NUM_THREADS": str(threads)}
    with ThreadPoolExecutor(max_workers=max(len(jobs), 1)) as pool:
        futures = [pool.submit(run_recipe, **job, env=env) for job in jobs]
    errors = [str(f.exception()) for f in futures if f.exception() is not None]
    if errors:
        raise StageFailed("\n\n".join(errors))


_LOSS = re.compile(r"(train|valid) loss: ([0-9.eE+-]+)")


def read_train_log(path: Path) -> dict[str, list[float]]:
    """Per-epoch ``train``/``valid`` losses from a SpeechBrain ``train_log.txt``.

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "train_log.txt"
    >>> _ = p.write_text("epoch: 1, lr: 1e-3 - train loss: 4.5 - valid loss: 4.1\\n"
    ...                  "epoch: 2, lr: 1e-3 - train loss: 3.9 - valid loss: 3.7\\n")
    >>> read_train_log(p)
    {'train': [4.5, 3.9], 'valid': [4.1, 3.7]}
    """
    losses: dict[str, list[float]] = {"train": [], "valid": []}
    if not Path(path).exists():
        return losses
    for line in Path(path).read_text().splitlines():
        for kind, value in _LOSS.findall(line):
            losses[kind].append(float(value))
    return losses
