"""End-to-end demo on corpora built offline: pretrain, probe, fine-tune, evaluate.

``python -m speechbrain_wsm.demo`` (or ``make demo``) runs, with a line per
stage:

1. builds the synthetic multi-voice corpus and the real-speech corpus from
   Debian packages (:mod:`speechbrain_wsm.data`) and prepares their manifests;
2. pretrains small wav2vec 2.0 models with MHSA, SM and WSM context encoders
   on the unlabeled synthetic audio (the pretraining recipe);
3. probes each frozen encoder with the MP3S BiLSTM + CTC probe on the labeled
   synthetic ``1h``-style set;
4. selectively fine-tunes the MHSA-pretrained model: WSM blocks replacing its
   top layers, next to the top-N MHSA and full fine-tuning baselines, on the
   synthetic ``10min`` and ``1h`` sets and on the real ~10-minute set;
5. scores WER on the synthetic test set (unseen voices) and on the held-out
   real-speech test set;
6. writes ``results.md`` (WER per test set, trainable parameters, step time
   and peak memory per variant) and PNG plots (loss curves; time and memory
   against length from the layer benchmark).

Every recipe runs as a user runs it (``python train.py hparams/X.yaml
--key=value``, from its folder). Finished stages are skipped on a rerun, and a
stage interrupted by Ctrl-C resumes from the recipe's last checkpoint.
``--quick`` shrinks everything to a CI-sized run of a few minutes; the
default sizes take about half an hour on a 2-core CPU; ``--device cuda
--scale 4`` trains longer on a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from speechbrain_wsm.pipeline import (
    Stage,
    StageFailed,
    read_train_log,
    run_recipe,
    run_stages,
)

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "recipes/LibriSpeech/self-supervised-learning/wav2vec2"
PROBE = ROOT / "recipes/MP3S/LibriSpeech/LSTM"
FINETUNE = ROOT / "recipes/LibriSpeech/ASR/selective-finetuning"
MIXERS = ("mhsa", "sm", "wsm")
FT_MODES = ("wsm", "mhsa_top", "full")

# Sizes: (quick, default). Epoch counts are multiplied by --scale.
SIZES = {
    "synthetic_hours": (0.15, 0.4),
    "eval_minutes": (1.5, 3.0),
    "d_model": (32, 96),
    "num_layers": (2, 4),
    "nhead": (2, 4),
    "d_ffn": (64, 192),
    "extractor_dim": (32, 96),
    "final_dim": (32, 64),
    "pretrain_epochs": (1, 6),
    "probe_epochs": (2, 8),
    "probe_lstm": (32, 128),
    "finetune_epochs": (3, 12),
    "window_size": (8, 16),
    "bench_lengths": ([2, 5], [5, 10, 20, 40, 60]),
}


def sizes(quick: bool, scale: float) -> dict:
    s = {k: v[0] if quick else v[1] for k, v in SIZES.items()}
    for k in ("pretrain_epochs", "probe_epochs", "finetune_epochs"):
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
            str(real / "LibriSpeech"),
            m,
            tr_splits=["train-real-10min"],
            te_splits=["test-real"],
            progress=False,
        )
        return {
            name: _hours(self.manifests / f"{name}.csv")
            for name in (
                "train-synth",
                "librilight-10min",
                "librilight-1h",
                "dev-synth",
                "test-synth",
                "train-real-10min",
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
    def encoder_overrides(self) -> dict:
        s = self.s
        return {k: s[k] for k in ("d_model", "num_layers", "nhead", "d_ffn")}

    def pretrain(self, mixer: str):
        out = self.work / "pretrain" / mixer
        overrides = {
            "output_folder": out,
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
            "num_workers": 0,
            "layerdrop": 0.0,
            **self.encoder_overrides(),
        }
        if mixer == "wsm":
            overrides["window_size"] = self.s["window_size"]
        run_recipe(
            PRETRAIN / "train.py",
            PRETRAIN / f"hparams/wav2vec2_{mixer}.yaml",
            overrides,
            self.logs / f"pretrain_{mixer}.log",
            self.run_opts,
        )
        return {"losses": read_train_log(out / "train_log.txt")}

    def probe(self, mixer: str):
        out = self.work / "probe" / mixer
        self._stage_manifests(
            out, ["librilight-1h", "dev-synth", "test-synth", "test-real"]
        )
        overrides = {
            "output_folder": out,
            "ssl_source": self.work / "pretrain" / mixer,
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "train_splits": ["librilight-1h"],
            "dev_splits": ["dev-synth"],
            "test_splits": ["test-synth", "test-real"],
            "number_of_epochs": self.s["probe_epochs"],
            "lstm_size": self.s["probe_lstm"],
            "lr": 0.002,
            "batch_size": 8,
            "num_workers": 0,
            "feature_cache_dir": out / "features",
        }
        run_recipe(
            PROBE / "train.py",
            PROBE / "hparams/ssl.yaml",
            overrides,
            self.logs / f"probe_{mixer}.log",
            self.run_opts,
        )
        return {"losses": read_train_log(out / "train_log.txt"), "wer": _wers(out)}

    def finetune(self, mode: str, train_set: str):
        out = self.work / "finetune" / f"{mode}_{train_set}"
        real = train_set == "train-real-10min"
        name = {"10min": "librilight-10min", "1h": "librilight-1h"}.get(
            train_set, train_set
        )
        self._stage_manifests(out, [name, "dev-synth", "test-synth", "test-real"])
        overrides = {
            "output_folder": out,
            "ssl_source": self.work / "pretrain" / "mhsa",
            "data_folder": self.corpora
            / ("real" if real else "synthetic")
            / "LibriSpeech",
            "skip_prep": True,
            "train_set": train_set,
            "dev_splits": ["dev-synth"],
            "test_splits": ["test-synth", "test-real"],
            "number_of_epochs": self.s["finetune_epochs"],
            "num_replaced_layers": min(2, self.s["num_layers"]),
            "seconds_per_batch": 60,
            "num_workers": 0,
            "extra_decoders": [],  # greedy only: the Python beam search is slow
        }
        if mode == "wsm":
            overrides["window_size"] = self.s["window_size"]
        run_recipe(
            FINETUNE / "train.py",
            FINETUNE / f"hparams/{mode}.yaml",
            overrides,
            self.logs / f"finetune_{mode}_{train_set}.log",
            self.run_opts,
        )
        return {"losses": read_train_log(out / "train_log.txt"), "wer": _wers(out)}

    def finetune_costs(self):
        from speechbrain_wsm.bench import finetune

        out = self.work / "bench"
        argv = ["--device", "cpu", "--out", str(out)]
        argv += ["--quick"] if self.args.quick else ["--lengths", "8", "--rounds", "2"]
        finetune.main(argv)
        return json.loads((out / "finetune_cpu.json").read_text())

    # -- the whole run ----------------------------------------------------------
    def stages(self) -> list[Stage]:
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
            Stage(
                "benchmark: layers",
                self.bench,
                [self.work / "bench" / "layers_cpu.png"],
            ),
        ]
        for mixer in MIXERS:
            st.append(
                Stage(
                    f"pretrain: {mixer}",
                    lambda m=mixer: self.pretrain(m),
                    [self.work / "pretrain" / mixer / "hyperparams.yaml"],
                )
            )
        for mixer in MIXERS:
            st.append(
                Stage(
                    f"probe: {mixer}",
                    lambda m=mixer: self.probe(m),
                    [self.work / "probe" / mixer / "results.md"],
                )
            )
        train_sets = (
            ["1h", "train-real-10min"]
            if self.args.quick
            else ["10min", "1h", "train-real-10min"]
        )
        for train_set in train_sets:
            for mode in FT_MODES:
                out = self.work / "finetune" / f"{mode}_{train_set}"
                st.append(
                    Stage(
                        f"finetune: {mode} on {train_set}",
                        lambda m=mode, t=train_set: self.finetune(m, t),
                        [out / "results.md"],
                    )
                )
        st.append(
            Stage(
                "benchmark: fine-tuning costs",
                self.finetune_costs,
                [self.work / "bench" / "finetune_cpu.json"],
            )
        )
        return st


def _hours(csv_path: Path) -> float:
    import csv

    with open(csv_path, newline="") as f:
        return round(sum(float(r["duration"]) for r in csv.DictReader(f)) / 3600, 3)


def _wers(out: Path) -> dict:
    """``{split: WER}`` from a recipe's ``wer_<split>.txt`` files."""
    wers = {}
    for path in sorted(out.glob("wer_*.txt")):
        first = path.read_text().split("\n", 1)[0].split()
        if first and first[0] == "%WER":
            wers[path.stem[4:]] = float(first[1])
    return wers


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
