"""The wav2vec 2.0 pretraining recipe, run for real on the fixture corpus, shrunk by flags."""

import math
import re
import sys
from pathlib import Path

import pytest
import torch
from recipe_helpers import PRETRAINING, SAMPLES, run_python
from speechbrain.dataio.dataio import read_audio

from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder
from speechbrain_wsm.recipe import dynamic_batch_sampler, manifest_dataset

RECIPE = PRETRAINING
SAMPLES = SAMPLES / "LibriSpeech"
SECONDS_PER_BATCH = 8
FLAGS = [
    f"--data_folder={SAMPLES}",
    "--train_splits=[test-clean]",
    "--dev_splits=[test-clean]",
    "--test_splits=[test-clean]",
    "--d_model=32",
    "--num_layers=2",
    "--nhead=2",
    "--d_ffn=64",
    "--extractor_dim=32",
    "--final_dim=16",
    "--num_negatives=10",
    "--number_of_epochs=1",
    f"--seconds_per_batch={SECONDS_PER_BATCH}",
    "--grad_accumulation_factor=1",
    "--warmup=2",
    "--cooldown=2",
    "--optimizer_step_limit=1000",
    "--num_workers=0",
    "--log_interval=1",
    "--noprogressbar",
]
pytestmark = pytest.mark.slow


def run(argv, launcher=(sys.executable,)):
    """``train.py *argv`` in the recipe's folder, in a child process; its log."""
    return run_python(["train.py", *argv], RECIPE, launcher)


def epochs(out: Path) -> list[dict]:
    """``epoch``, ``steps``, train and valid ``loss`` of each line of train_log.txt."""
    found = []
    for line in (out / "train_log.txt").read_text().splitlines():
        m = re.match(
            r"epoch: (\d+), steps: (\d+), .* train loss: (\S+) - valid loss: (\S+),",
            line,
        )
        if m:
            e, s, tr, va = m.groups()
            found.append(
                {
                    "epoch": int(e),
                    "steps": int(s),
                    "train": float(tr),
                    "valid": float(va),
                }
            )
    return found


def checkpoints(out: Path) -> list[Path]:
    return sorted((out / "save").glob("CKPT+*/wav2vec2.ckpt"))


def check_encoder_loads(out: Path, num_layers=2, d_model=32):
    encoder = load_pretrained_encoder(out)
    files = sorted(SAMPLES.glob("test-clean/*/*/*.flac"))[:2]
    sigs = [read_audio(str(f))[:24000] for f in files]
    wav = torch.stack(sigs)
    with torch.no_grad():
        output, hidden, frames = encoder(wav, torch.tensor([24000, 19200]))
    assert len(hidden) == num_layers + 1
    assert frames[0] == output.shape[1] > frames[1]
    assert output.shape[0] == 2 and output.shape[-1] == d_model
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("mixer", ["mhsa", "sm"])
def test_recipe_trains_checkpoints_and_loads(mixer, tmp_path):
    out = tmp_path / mixer
    run([f"hparams/wav2vec2_{mixer}.yaml", *FLAGS, f"--output_folder={out}"])
    assert checkpoints(out)
    (first,) = epochs(out)
    assert first["steps"] > 0 and math.isfinite(first["train"])
    assert math.isfinite(first["valid"])
    assert "d_model: 32" in (out / "hyperparams.yaml").read_text()
    check_encoder_loads(out)


def test_wsm_recipe_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "wsm"
    argv = [
        "hparams/wav2vec2_wsm.yaml",
        *FLAGS,
        f"--output_folder={out}",
        "--window_size=4",
    ]
    run(argv)
    assert len(checkpoints(out)) == 1
    check_encoder_loads(out)

    argv[argv.index("--number_of_epochs=1")] = "--number_of_epochs=2"
    log = run(argv)  # the same command, for one more epoch
    assert "Loading a checkpoint from" in log
    assert "Going into epoch 2" in log and "Going into epoch 1" not in log
    first, second = epochs(out)
    assert (first["epoch"], second["epoch"]) == (1, 2)
    assert second["steps"] > first["steps"]  # the optimiser step count went on
    assert all(math.isfinite(e["train"]) for e in (first, second))
    assert len(checkpoints(out)) == 2


def test_two_process_ddp_run_splits_the_batches(tmp_path):
    out = tmp_path / "ddp"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone")
    launcher += ("--nproc_per_node=2",)  # standalone: a free port, no clash
    argv = ["hparams/wav2vec2_sm.yaml", *FLAGS, f"--output_folder={out}"]
    run([*argv, "--distributed_backend=gloo"], launcher=launcher)
    assert checkpoints(out)
    (first,) = epochs(out)
    assert math.isfinite(first["train"]) and math.isfinite(first["valid"])
    sampler = dynamic_batch_sampler(
        manifest_dataset(str(out / "train.csv"), min_duration=1.0, max_duration=30.0),
        SECONDS_PER_BATCH,
        num_buckets=70,
        seed=1986,
    )
    sampler.set_epoch(1)  # what Brain does for epoch 1
    assert first["steps"] == math.ceil(len(sampler) / 2)  # each process: half
    check_encoder_loads(out)


def test_ddp_with_one_batch_for_two_processes_and_accumulation(tmp_path):
    # a training set that dynamic batching makes into one batch (a 10-minute
    # fold on several GPUs), and an accumulation factor longer than the epoch:
    # both processes train, and the epoch's one optimiser step is taken
    out = tmp_path / "ddp1"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone")
    launcher += ("--nproc_per_node=2",)
    flags = [f for f in FLAGS if not f.startswith(("--seconds_per", "--grad_acc"))]
    argv = ["hparams/wav2vec2_sm.yaml", *flags, f"--output_folder={out}"]
    argv += ["--seconds_per_batch=1000", "--grad_accumulation_factor=4"]
    run([*argv, "--distributed_backend=gloo"], launcher=launcher)
    train = manifest_dataset(str(out / "train.csv"), min_duration=1.0)
    assert len(dynamic_batch_sampler(train, 1000, num_buckets=70, seed=1986)) == 1
    (first,) = epochs(out)
    assert first["steps"] == 1 and math.isfinite(first["train"])
