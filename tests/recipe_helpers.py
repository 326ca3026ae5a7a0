"""Running a recipe's real ``train.py`` in the test process, shrunk by overrides.

Importable from the tests because ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default import mode).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


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
