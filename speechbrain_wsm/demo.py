"""End-to-end demo on corpora built offline: models that learn to recognise speech.

``python -m speechbrain_wsm.demo`` (or ``make demo``) runs, with a line per
stage:

1. builds the synthetic multi-voice corpus and the real-speech corpus from
   Debian packages (:mod:`speechbrain_wsm.data`) and prepares their manifests;
2. benchmarks one mixer layer (time and memory against length);
3. trains the from-scratch CTC recipe with MHSA (relative positions), SM and
   WSM Conformers on the labeled synthetic training set, at equal steps;
4. pretrains wav2vec 2.0 with MHSA, SM and WSM context encoders on all the
   (unlabeled) synthetic training audio;
5. probes each frozen encoder with the MP3S BiLSTM + CTC probe;
6. on the Libri-light style ``10min`` and ``1h`` folds: selective fine-tuning
   of the MHSA-pretrained model (WSM blocks in place of its top 2 attention
   layers), top-2 MHSA and full fine-tuning, next to the from-scratch recipe
   trained on the same fold;
7. sweeps the WSM window of selective fine-tuning on ``10min`` with
   ``python -m speechbrain_wsm.sweep``;
8. transcribes a real-speech file with the best model;
9. writes ``results.md`` (CER and WER on the synthetic test set, unseen
   voices, and on the real-speech test set; step time, peak memory and
   trainable parameters; whether each target of the demo was met) and PNG
   plots.

Every recipe runs as a user runs it (``python train.py hparams/X.yaml
--key=value``, from its folder); the runs of one stage run side by side, one
CPU thread each. Finished stages are skipped on a rerun, and a stage
interrupted by Ctrl-C resumes from the recipes' last checkpoints. ``--quick``
shrinks everything to a CI-sized run of a few minutes; ``--device cuda
--scale 4`` trains four times longer on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from speechbrain_wsm.pipeline import (
    Stage,
    StageFailed,
    read_train_log,
    run_recipes,
    run_stages,
)
from speechbrain_wsm.scoring import read_error_rates

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "recipes/LibriSpeech/ASR/CTC"
PRETRAIN = ROOT / "recipes/LibriSpeech/self-supervised-learning/wav2vec2"
PROBE = ROOT / "recipes/MP3S/LibriSpeech/LSTM"
FINETUNE = ROOT / "recipes/LibriSpeech/ASR/selective-finetuning"
MIXERS = ("mhsa", "sm", "wsm")
FT_MODES = ("wsm", "mhsa_top", "full")
FOLDS = ("10min", "1h")
TEST_SETS = ("test-synth", "test-real")

# Sizes: (quick, default). Epoch counts are multiplied by --scale.
SIZES = {
    "synthetic_hours": (0.15, 1.0),
    "eval_minutes": (1.5, 4.0),
    "d_model": (32, 144),
    "num_layers": (2, 4),
    "nhead": (2, 4),
    "d_ffn": (64, 576),
    "kernel_size": (7, 15),
    "window_size": (8, 16),
    "scratch_epochs": (2, 10),
    "scratch_batch": (40, 120),  # seconds of audio per batch
    "extractor_dim": (32, 96),
    "final_dim": (32, 64),
    "pretrain_epochs": (1, 2),
    "probe_epochs": (2, 15),
    "probe_lstm": (32, 128),
    # about 3 h of audio per fine-tuning run on either fold
    "finetune_epochs_10min": (3, 40),
    "finetune_epochs_1h": (2, 8),
    "sweep_windows": ([4, 16], [4, 16, 64]),
    "sweep_epochs": (2, 10),  # each window on the 10min fold, one after the other
    "bench_lengths": ([2, 5], [5, 10, 20, 40, 60]),
}


def sizes(quick: bool, scale: float) -> dict:
    s = {k: v[0] if quick else v[1] for k, v in SIZES.items()}
    for k in [k for k in s if "epochs" in k]:
        s[k] = max(1, round(s[k] * scale))
    return s


class Demo:
    """The demo's stages over one work folder."""

    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.s = sizes(args.quick, args.scale)
        self.corpora = self.work / "corpora"
        self.manifests = self.work / "manifests"
        self.logs = self.work / "logs"
        self.run_opts = [f"--device={args.device}"]

    # -- data -----------------------------------------------------------------
    def build_synthetic(self):
        from speechbrain_wsm.data.synthetic import build_synthetic_corpus

        build_synthetic_corpus(
            str(self.corpora / "synthetic"),
            hours=self.s["synthetic_hours"],
            dev_minutes=self.s["eval_minutes"],
            test_minutes=self.s["eval_minutes"],
            workers=self.args.workers,
            seed=0,
        )

    def build_real(self):
        from speechbrain_wsm.data.debian_corpus import build_debian_corpus

        build_debian_corpus(str(self.corpora / "real"), workers=self.args.workers)

    def prepare(self):
        from speechbrain_wsm.data.librispeech import (
            prepare_librilight_limited,
            prepare_librispeech,
        )

        m = str(self.manifests)
        syn, real = self.corpora / "synthetic", self.corpora / "real"
        prepare_librispeech(
            str(syn / "LibriSpeech"),
            m,
            tr_splits=["train-synth"],
            dev_splits=["dev-synth"],
            te_splits=["test-synth"],
            progress=False,
        )
        prepare_librilight_limited(
            str(syn / "librispeech_finetuning"), m, progress=False
        )
        prepare_librispeech(
            str(real / "LibriSpeech"), m, te_splits=["test-real"], progress=False
        )
        return {
            name: _hours(self.manifests / f"{name}.csv")
            for name in (
                "train-synth",
                "librilight-10min",
                "librilight-1h",
                "dev-synth",
                "test-synth",
                "test-real",
            )
        }

    def _stage_manifests(self, out: Path, names) -> None:
        """Copy the demo's manifests into a recipe's output folder (skip_prep)."""
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(self.manifests / f"{name}.csv", out / f"{name}.csv")

    # -- benchmark ------------------------------------------------------------
    def bench(self):
        from speechbrain_wsm.bench import layers

        argv = ["--device", "cpu", "--out", str(self.work / "bench"), "--windows", "32"]
        argv += ["--lengths", *map(str, self.s["bench_lengths"])]
        if self.args.quick:
            argv += ["--d-model", "64", "--rounds", "2", "--budget", "2"]
        layers.main(argv)

    # -- recipes ----------------------------------------------------------------
    def _job(self, recipe: Path, yaml: str, out: Path, overrides: dict, log: str):
        return {
            "script": recipe / "train.py",
            "hparams": recipe / "hparams" / yaml,
            "overrides": {"output_folder": out, "num_workers": 0, **overrides},
            "log": self.logs / f"{log}.log",
            "run_opts": self.run_opts,
        }

    def _run(self, jobs) -> None:
        run_recipes(jobs, threads=None if self.args.device == "cpu" else 1)

    def _encoder(self) -> dict:
        return {k: self.s[k] for k in ("d_model", "num_layers", "nhead", "d_ffn")}

    def scratch_job(self, mixer: str, train: str, out: Path):
        """The from-scratch CTC recipe on ``train`` (a split or fold name)."""
        overrides = {
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "manifest_folder": self.manifests,
            "train_splits": [train],
            "dev_splits": ["dev-synth"],
            "test_splits": list(TEST_SETS),
            "number_of_epochs": self.s["scratch_epochs"],
            "seconds_per_batch": self.s["scratch_batch"],
            "kernel_size": self.s["kernel_size"],
            "cnn_channels": [32, 32],
            "spec_augment": False,
            "lr": 0.001,
            "hold": 0.6,
            **self._encoder(),
        }
        if mixer == "wsm":
            overrides["window_size"] = self.s["window_size"]
        return self._job(
            SCRATCH, f"conformer_{mixer}.yaml", out, overrides, f"scratch_{out.name}"
        )

    def scratch(self):
        out = self.work / "scratch"
        self._run([self.scratch_job(m, "train-synth", out / m) for m in MIXERS])
        return {m: _run_facts(out / m) for m in MIXERS}

    def pretrain(self):
        jobs = []
        for mixer in MIXERS:
            overrides = {
                "data_folder": self.corpora / "synthetic" / "LibriSpeech",
                "skip_prep": True,
                "train_csv": self.manifests / "train-synth.csv",
                "valid_csv": self.manifests / "dev-synth.csv",
                "number_of_epochs": self.s["pretrain_epochs"],
                "extractor_dim": self.s["extractor_dim"],
                "final_dim": self.s["final_dim"],
                "seconds_per_batch": 60,
                "grad_accumulation_factor": 1,
                "warmup": 20,
                "cooldown": 1000,
                "num_negatives": 20,
                "layerdrop": 0.0,
                **self._encoder(),
            }
            if mixer == "wsm":
                overrides["window_size"] = self.s["window_size"]
            out = self.work / "pretrain" / mixer
            jobs.append(
                self._job(
                    PRETRAIN,
                    f"wav2vec2_{mixer}.yaml",
                    out,
                    overrides,
                    f"pretrain_{mixer}",
                )
            )
        self._run(jobs)
        return {
            m: {"losses": read_train_log(self.work / "pretrain" / m / "train_log.txt")}
            for m in MIXERS
        }

    def probe(self):
        jobs = []
        for mixer in MIXERS:
            out = self.work / "probe" / mixer
            self._stage_manifests(out, ["librilight-1h", "dev-synth", *TEST_SETS])
            overrides = {
                "ssl_source": self.work / "pretrain" / mixer,
                "data_folder": self.corpora / "synthetic" / "LibriSpeech",
                "skip_prep": True,
                "train_splits": ["librilight-1h"],
                "dev_splits": ["dev-synth"],
                "test_splits": list(TEST_SETS),
                "number_of_epochs": self.s["probe_epochs"],
                "lstm_size": self.s["probe_lstm"],
                "lstm_layers": 1,
                "layer_norm": True,
                "lr": 0.003,
                "hold": 0.6,
                "batch_size": 8,
                "feature_cache_dir": out / "features",
            }
            jobs.append(self._job(PROBE, "ssl.yaml", out, overrides, f"probe_{mixer}"))
        self._run(jobs)
        return {m: _run_facts(self.work / "probe" / m) for m in MIXERS}

    def finetune_overrides(self, fold: str) -> dict:
        return {
            "ssl_source": self.work / "pretrain" / "mhsa",
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "manifest_folder": self.manifests,
            "train_set": fold,
            "dev_splits": ["dev-synth"],
            "test_splits": list(TEST_SETS),
            "number_of_epochs": self.s[f"finetune_epochs_{fold}"],
            "num_replaced_layers": min(2, self.s["num_layers"]),
            "window_size": self.s["window_size"],
            "seconds_per_batch": 60,
            "lr": 0.002,
            "lr_pretrained": 0.0005,  # full fine-tuning; mhsa_top uses lr
            "hold": 0.6,
            "extra_decoders": [],  # greedy only: the Python beam search is slow
        }

    def low_resource(self, fold: str):
        """Selective / top-2 MHSA / full fine-tuning and from scratch, on one fold."""
        jobs, outs = [], {}
        for mode in FT_MODES:
            out = outs[mode] = self.work / "finetune" / f"{mode}_{fold}"
            jobs.append(
                self._job(
                    FINETUNE,
                    f"{mode}.yaml",
                    out,
                    self.finetune_overrides(fold),
                    f"finetune_{mode}_{fold}",
                )
            )
        out = outs["scratch"] = self.work / "finetune" / f"scratch_{fold}"
        jobs.append(self.scratch_job("wsm", fold, out))
        self._run(jobs)
        return {name: _run_facts(path) for name, path in outs.items()}

    def sweep(self):
        from speechbrain_wsm.sweep import run_sweep

        folder = self.work / "sweep"
        overrides = self.finetune_overrides("10min")
        del overrides["window_size"]
        overrides["number_of_epochs"] = self.s["sweep_epochs"]
        result = run_sweep(
            FINETUNE,
            "hparams/wsm.yaml",
            "window_size",
            self.s["sweep_windows"],
            overrides={**overrides, "num_workers": 0},
            sweep_folder=folder,
            run_opts=self.run_opts,
        )
        if result["failed"]:
            raise StageFailed(f"sweep runs failed: {result['failed']}")
        return {"sweep_md": str(folder / "sweep.md")}

    def transcribe(self, facts: dict):
        """The best model on test-synth transcribes one real-speech file."""
        from speechbrain_wsm.transcribe import Transcriber

        runs = _all_runs(facts)
        name, run = min(
            runs.items(),
            key=lambda kv: kv[1]["rates"].get("test-synth", {}).get("CER", 1e9),
        )
        with open(self.manifests / "test-real.csv", newline="") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: -len(r["wrd"].split()))
        row = rows[len(rows) // 4]  # a sentence, not a single word
        model = Transcriber.from_run(run["folder"], device=self.args.device)
        return {
            "model": name,
            "file": row["wav"],
            "reference": row["wrd"],
            "hypothesis": model.transcribe_file(row["wav"]),
        }

    def finetune_costs(self):
        from speechbrain_wsm.bench import finetune

        out = self.work / "bench"
        argv = ["--device", "cpu", "--out", str(out)]
        argv += ["--quick"] if self.args.quick else ["--lengths", "8", "--rounds", "2"]
        finetune.main(argv)
        return json.loads((out / "finetune_cpu.json").read_text())

    # -- the whole run ----------------------------------------------------------
    def stages(self) -> list[Stage]:
        w = self.work
        st = [
            Stage(
                "corpus: synthetic",
                self.build_synthetic,
                [self.corpora / "synthetic" / "LibriSpeech"],
            ),
            Stage(
                "corpus: real speech",
                self.build_real,
                [self.corpora / "real" / "LibriSpeech"],
            ),
            Stage("manifests", self.prepare, [self.manifests / "test-real.csv"]),
            Stage("benchmark: layers", self.bench, [w / "bench" / "layers_cpu.png"]),
            Stage(
                "from scratch: mhsa, sm, wsm",
                self.scratch,
                [w / "scratch" / m / "results.md" for m in MIXERS],
            ),
            Stage(
                "pretrain: mhsa, sm, wsm",
                self.pretrain,
                [w / "pretrain" / m / "hyperparams.yaml" for m in MIXERS],
            ),
            Stage(
                "probe: mhsa, sm, wsm",
                self.probe,
                [w / "probe" / m / "results.md" for m in MIXERS],
            ),
        ]
        for fold in FOLDS:
            names = [f"{m}_{fold}" for m in (*FT_MODES, "scratch")]
            st.append(
                Stage(
                    f"low-resource: {fold}",
                    lambda f=fold: self.low_resource(f),
                    [w / "finetune" / n / "results.md" for n in names],
                )
            )
        st += [
            Stage("sweep: wsm window", self.sweep, [w / "sweep" / "sweep.md"]),
            Stage(
                "benchmark: fine-tuning costs",
                self.finetune_costs,
                [w / "bench" / "finetune_cpu.json"],
            ),
        ]
        return st


def _hours(csv_path: Path) -> float:
    with open(csv_path, newline="") as f:
        return round(sum(float(r["duration"]) for r in csv.DictReader(f)) / 3600, 3)


def _run_facts(out: Path) -> dict:
    """What the report needs of one CTC run: rates, cost, losses, parameters."""
    cost_file = out / "train_cost.json"
    return {
        "folder": str(out),
        "rates": read_error_rates(out),
        "cost": json.loads(cost_file.read_text()) if cost_file.exists() else {},
        "losses": read_train_log(out / "train_log.txt"),
    }


def _all_runs(facts: dict) -> dict[str, dict]:
    """``{label: run facts}`` of every CTC run the demo made."""
    return {
        f"{stage.split(':')[0]}: {name}": run
        for stage, info in facts.items()
        if isinstance(info, dict)
        for name, run in info.items()
        if isinstance(run, dict) and "rates" in run
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir", default="results/demo", help="everything the demo writes"
    )
    p.add_argument("--quick", action="store_true", help="CI-sized run (a few minutes)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every epoch count"
    )
    p.add_argument(
        "--workers", type=int, default=2, help="processes for corpus building"
    )
    p.add_argument("--redo", nargs="*", default=[], help="stage names to run again")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    demo = Demo(args)
    try:
        facts = run_stages(demo.stages(), demo.work, redo=args.redo)
        facts["transcription"] = demo.transcribe(facts)
    except StageFailed as e:
        print(f"\nstage failed: {e}", file=sys.stderr)
        print(
            "fix the cause and rerun the same command: finished stages are skipped.",
            file=sys.stderr,
        )
        return 1
    from speechbrain_wsm.demo_report import write_report

    report = write_report(demo, facts)
    print("\n" + report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
