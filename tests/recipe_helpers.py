"""Running a recipe's real ``train.py``, shrunk by overrides: in the test
process, or as a command in a child process.

Importable from the tests because ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default import mode).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SAMPLES = ROOT / "tests" / "samples"
#: The learning tests' overrides of the fine-tuning recipes (on the
#: ``learning_samples`` of ``conftest.py``): train, validate and test on its 16
#: utterances, in 4 s batches, at a peak learning rate of 0.005 held for 70 %
#: of the steps, without head dropout.
LEARNING_OPTIONS = {
    "train_set": "train-learn",
    "dev_splits": "[train-learn]",
    "test_splits": "[train-learn]",
    "seconds_per_batch": 4,
    "lr": 0.005,
    "warmup": 0.05,
    "hold": 0.7,
    "head_dropout": 0.0,
}
#: The wav2vec 2.0 pretraining recipe.
PRETRAINING = RECIPES / "LibriSpeech" / "self-supervised-learning" / "wav2vec2"
#: Its YAML shrunk to one 16-wide layer, reading no data.
TINY_PRETRAINING = [
    "--data_folder=unused",
    "--d_model=16",
    "--num_layers=1",
    "--nhead=2",
    "--d_ffn=32",
    "--extractor_dim=16",
    "--final_dim=8",
]


def load_train(recipe: Path):
    """The recipe's ``train.py`` as a module (its ``main(argv)`` runs it)."""
    name = "train_" + "_".join(Path(recipe).parts[-2:]).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, Path(recipe) / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(recipe: Path, yaml: str, options: dict) -> Path:
    """``python train.py hparams/<yaml>.yaml --key=value ...``; returns the output folder."""
    argv = [str(Path(recipe) / "hparams" / f"{yaml}.yaml")]
    argv += [f"--{key}={value}" for key, value in options.items()]
    load_train(recipe).main(argv)
    return Path(options["output_folder"])


def asr_options(
    data_folder, output_folder, split: str = "test-clean", train_key: str = "train_set"
) -> dict:
    """Data options of the LibriSpeech CTC recipes on one tiny split, on CPU.

    ``train_key``: ``train_set`` (one split or fold, the fine-tuning recipes)
    or ``train_splits`` (a list, the from-scratch recipe).
    """
    train = f"[{split}]" if train_key == "train_splits" else split
    return {
        "data_folder": data_folder,
        "output_folder": output_folder,
        train_key: train,
        "dev_splits": f"[{split}]",
        "test_splits": f"[{split}]",
        "num_workers": 0,
        "device": "cpu",
    }


def variant_lines(recipe: Path, yaml: str, marker: str) -> list[str]:
    """The lines of the recipe's ``hparams/<yaml>.yaml`` but those holding
    ``marker`` (the lines its variants differ in), its own file name written
    ``X``: the same for every variant of a recipe."""
    text = (Path(recipe) / "hparams" / f"{yaml}.yaml").read_text()
    text = text.replace(f"hparams/{yaml}.yaml", "hparams/X.yaml")
    return [line for line in text.splitlines() if marker not in line]


def run_finetuning(recipe: Path, yaml: str, source, output, data_folder, **options):
    """A recipe that fine-tunes ``ssl_source`` ``source``, run in this process on
    one split of ``data_folder`` (:func:`asr_options`) with ``options``;
    returns the output folder."""
    options = {**asr_options(data_folder, output), "ssl_source": source, **options}
    return run_in_process(recipe, yaml, options)


def load_tiny_pretraining(output_folder, mixer: str, *flags: str):
    """``load_hparams`` of ``hparams/wav2vec2_<mixer>.yaml`` with
    :data:`TINY_PRETRAINING` and ``flags``, writing to ``output_folder``."""
    from speechbrain_wsm.recipe import load_hparams

    yaml = PRETRAINING / "hparams" / f"wav2vec2_{mixer}.yaml"
    argv = [str(yaml), *TINY_PRETRAINING, *flags]
    return load_hparams([*argv, f"--output_folder={output_folder}"])


def child_env() -> dict:
    """This environment, with the project first on ``PYTHONPATH`` and one
    OpenMP thread (the tests run side by side on 2 cores)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def run_python(argv, cwd=None, launcher=(sys.executable,), timeout=300) -> str:
    """``python *argv`` (or ``launcher``, e.g. ``torchrun``) in ``cwd`` with
    :func:`child_env`; asserts it exits 0 and returns its stdout + stderr."""
    proc = subprocess.run(
        [*launcher, *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return log


class Killed(Exception):
    """What :func:`kill_after_epoch` raises in place of a kill."""


def kill_after_epoch(monkeypatch, epoch: int) -> None:
    """Make the next in-process run stop as a kill after epoch ``epoch``'s
    checkpoint would: :class:`Killed` when epoch ``epoch + 1`` starts.

    A stop that leaves the run's plan alone (``--optimizer_step_limit``
    shortens the schedule: it spans the steps the run will take)."""
    from speechbrain_wsm.recipe.brain import RobustBrain

    fit_train = RobustBrain._fit_train

    def killed(self, train_set, epoch_now=None, enable=True, **kwargs):
        epoch_now = kwargs.get("epoch", epoch_now)
        if epoch_now > epoch:
            monkeypatch.setattr(RobustBrain, "_fit_train", fit_train)
            raise Killed(f"killed before epoch {epoch_now}")
        return fit_train(self, train_set, epoch_now, enable)

    monkeypatch.setattr(RobustBrain, "_fit_train", killed)
