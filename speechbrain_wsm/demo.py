"""End-to-end demo on corpora built offline: models that learn to recognise speech.

``python -m speechbrain_wsm.demo`` (or ``make demo``; about 30 minutes on two
CPU cores) runs, with a line per stage:

1. builds the synthetic multi-voice corpus (6 h, read by flite and espeak-ng
   voices; dev and test voices never heard in training) and the real-speech
   corpus from Debian packages (:mod:`speechbrain_wsm.data`), and prepares
   their manifests; the real test set is also split by source (the Asterisk
   prompt speaker, whom ``train-real-10min`` contains, and the LibriVox
   reader, a voice never heard);
2. builds a word 3-gram language model and a lexicon from public-domain text
   that holds no dev or test sentence;
3. times one training step of each from-scratch model, side by side as
   they train, and fits the step count (at most 2155) to ``--minutes`` (30)
   on this CPU;
4. trains the from-scratch CTC recipe with MHSA (relative positions), SM and
   WSM Conformers side by side, at equal steps, with the recipe's settings
   for small data: a 1-D convolutional front end, packed 60 s batches, a
   slow warm-up and a long hold,
   no dropout, bf16 autocast on CPUs that compute it natively,
   SpeechBrain's speed perturbation and noise, and ``train-real-10min``
   mixed into training;
5. decodes every test set greedily and with the language model and lexicon;
6. transcribes a LibriVox sentence and an Asterisk prompt with the model that
   did best on dev;
7. writes ``results.md``: CER and WER per test set, step times, the minutes of
   every stage, and each target and paper claim, met, missed or undecided.

``--all`` (90 minutes: ``--minutes`` is 90 there) adds what does not fit,
in two parts. First the stages of fixed size (:data:`SIZES`): the layer
benchmark, wav2vec 2.0 pretraining with the three context encoders (250
steps) and the MP3S probes of the frozen encoders, LASER fine-tuning of the
pretrained MHSA encoder and the same probe after it, the ``10min`` fold
(selective WSM fine-tuning of the pretrained model against full fine-tuning
and from scratch, and HFF + adapters of the feature-fusion recipe at full
fine-tuning's steps) and a from-scratch window sweep. Then the step fit
shares what they left among the three stages that train the fitted steps:
the three from-scratch models, their second seeds, and the small-data
settings' ablation (no augmentation, no real speech) beside a streaming
LLSA recogniser, all at equal steps.

Every recipe runs as a user runs it (``python train.py hparams/X.yaml
--key=value``, from its folder); the runs of one stage run side by side, one
CPU thread each. Finished stages are skipped on a rerun, and a stage
interrupted by Ctrl-C resumes from the recipes' last checkpoints. ``--quick``
shrinks everything to a CI-sized run of a few minutes; ``--reverb`` adds
reverberation of simulated rooms to the from-scratch runs' augmentation;
``--device cuda --scale 4`` trains four times longer on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import sys
from pathlib import Path
from threading import BrokenBarrierError

from speechbrain_wsm.pipeline import (
    Stage,
    StageFailed,
    read_train_log,
    run_recipes,
    run_stages,
    stage_facts,
)
from speechbrain_wsm.scoring import read_error_rates

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "recipes/LibriSpeech/ASR/CTC"
PRETRAIN = ROOT / "recipes/LibriSpeech/self-supervised-learning/wav2vec2"
PROBE = ROOT / "recipes/MP3S/LibriSpeech/LSTM"
FINETUNE = ROOT / "recipes/LibriSpeech/ASR/selective-finetuning"
LASER = ROOT / "recipes/LibriSpeech/self-supervised-finetuning/LASER"
FUSION = ROOT / "recipes/LibriSpeech/ASR/feature-fusion"
MIXERS = ("mhsa", "sm", "wsm")
FT_MODES = ("wsm", "mhsa_top", "full")
#: test sets every CTC run is scored on: synthetic voices never heard, the
#: real test set, and its two sources
TEST_SETS = ("test-synth", "test-real", "test-real-asterisk", "test-real-librivox")
#: the real-speech sources of ``test-real``, by speaker (see data.debian_corpus)
REAL_SOURCES = {"test-real-asterisk": "10001", "test-real-librivox": "10002"}

#: the lexicon decoder's settings, chosen on dev-synth with a 4 x 144 WSM
#: model of the default run (WER 52.5 % with the recipe's beam 20, weight
#: 0.5, bonus 1.0; 39.7 % with these; beam 200 gained nothing more)
LM_DECODING = {"beam_size": 100, "lm_weight": 0.7, "word_bonus": 0.5}

# Sizes: (quick, default). Step and epoch counts are multiplied by --scale.
SIZES = {
    "synthetic_hours": (0.15, 6.0),
    "train_speakers": (12, 240),
    "dev_minutes": (1.5, 4.0),
    "test_minutes": (1.5, 8.0),
    "d_model": (32, 144),
    "num_layers": (2, 4),
    "nhead": (2, 4),
    "d_ffn": (64, 576),
    "kernel_size": (7, 15),
    "window_size": (8, 16),
    # optimizer steps of every from-scratch run: the most the default run
    # takes; fewer where this CPU cannot fit them in --minutes (fit_steps)
    "scratch_steps": (24, 2155),
    "scratch_batch": (40, 60),  # seconds of (padded) audio per batch
    "lm_order": (2, 3),
    "rirs": (4, 100),  # simulated room impulse responses (reverberation)
    # --all only
    "extractor_dim": (32, 96),
    "final_dim": (32, 64),
    "pretrain_epochs": (1, 2),
    # at most this many pretraining steps: 9.3 minutes for the three encoders
    # side by side on the 2-core AMD EPYC (MHSA the slowest, 551 s); two
    # epochs of 6 h (about 850 steps) would take about 35
    "pretrain_steps": (1000, 250),
    # the probes' BiLSTMs on cached features: about 1.5 s a step of 8
    # utterances, three side by side on 2 cores (59 steps an epoch of 1 h)
    "probe_epochs": (2, 6),
    "probe_lstm": (32, 128),
    # five runs side by side: 32.7 minutes at 40 epochs, half of --all's
    # fixed-size time; selective WSM leaves the blank plateau at about epoch 21
    "finetune_epochs_10min": (3, 40),
    "laser_steps": (4, 50),  # updates of one utterance (50: 26 s on the 2-core EPYC)
    "fusion_dim": (32, 128),  # HFF: width of the fusion blocks (FFN: twice that)
    "adapter_dim": (8, 16),  # HFF: bottleneck of the adapters in every layer
    "sweep_windows": ([4, 16], [4, 16, 64]),
    "sweep_steps": (16, 400),
    "bench_lengths": ([2, 5], [5, 10, 20, 40, 60]),
}


def sizes(quick: bool, scale: float) -> dict:
    s = {k: v[0] if quick else v[1] for k, v in SIZES.items()}
    for k in [k for k in s if "epochs" in k or "steps" in k]:
        s[k] = max(1, round(s[k] * scale))
    return s


#: the stage that fits the from-scratch steps to the CPU, and its marker's name
FIT_STAGE = "steps for this CPU"
#: a from-scratch recipe step over the training step that fit_steps times
#: side by side: data loading in the training process, gradient clipping,
#: logging and the validations. Measured: on the 2-core Intel Xeon with AMX
#: (bf16, 2026-12-06) the stage took 0.71 s a step (2155 steps, decoding
#: included) where the three models' steps timed side by side took at most
#: 0.42-0.47 s (three timings). Before, on an AMD EPYC without AVX512, steps
#: timed alone and divided over the cores: 1.03 s a step against 0.70 s
RECIPE_OVERHEAD = 1.6
#: minutes kept for decoding every test set greedily and with the LM, the
#: transcriptions and the report, when the steps are fitted to the budget
DECODE_MINUTES = 3.0
#: fewer steps than this and CTC barely leaves its blank plateau (CTC README)
MIN_STEPS = 400


def step_seconds(
    job: dict, batch: int = 10, seconds: float = 6.0, barrier=None
) -> float:
    """Seconds of one training step of a recipe job's model on one thread.

    The model is built from the job's YAML and overrides as the recipe
    builds it; a step is forward, CTC loss, backward and AdamW on ``batch``
    utterances of ``seconds`` each (the demo's 60 s batches), under the
    job's precision: the median of three timed steps after one warm-up,
    plus the recipe's waveform augmentation of such a batch when the job
    turns it on (the mean of three draws; each draws its own augmentations).
    ``barrier``: waited on before the timed steps, so that steps timed in
    several processes run at the same time (:func:`side_by_side_step_seconds`).
    """
    import statistics
    import tempfile
    import time

    import torch
    from hyperpyyaml import load_hyperpyyaml

    overrides = {
        k: str(v) if isinstance(v, Path) else v for k, v in job["overrides"].items()
    }
    from speechbrain_wsm.memory import keep_freed_memory
    from speechbrain_wsm.recipe.optim import make_optimizer

    keep_freed_memory()  # as the recipe trains on CPU (load_hparams)
    bf16 = "--precision=bf16" in job["run_opts"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp, open(job["hparams"]) as f:
            hp = load_hyperpyyaml(f, {**overrides, "output_folder": tmp})
            model = hp["asr_model"].train()
            opt = make_optimizer(torch.optim.AdamW, model.parameters(), lr=1e-4)
            gen = torch.Generator().manual_seed(0)
            wavs = 0.1 * torch.randn(batch, int(16000 * seconds), generator=gen)
            lens = torch.ones(batch)
            targets = torch.randint(
                1, hp["output_neurons"], (batch, int(12 * seconds)), generator=gen
            )
            augment = hp.get("wav_augment")
            if augment is None or not augment.augmentations:
                augment = None

            def train_step():
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    # [1]: lengths; [2]: intermediate CTC posteriors, whose
                    # losses this timing leaves out (the demo trains none)
                    log_probs = model(wavs, lens)[0]
                frames = torch.full((batch,), log_probs.shape[1])
                loss = torch.nn.functional.ctc_loss(
                    log_probs.transpose(0, 1).float(),
                    targets,
                    frames,
                    torch.full((batch,), targets.shape[1]),
                )
                loss.backward()
                opt.step()
                opt.zero_grad()
                return time.perf_counter() - start

            def augment_step():
                start = time.perf_counter()
                augment(wavs, lens)
                return time.perf_counter() - start

            train_step()
            if barrier is not None:
                barrier.wait()
            step = statistics.median(train_step() for _ in range(3))
            if augment is not None:
                step += statistics.mean(augment_step() for _ in range(3))
    except Exception:
        if barrier is not None:  # never leave the other timers waiting
            barrier.abort()
        raise
    finally:
        torch.set_num_threads(threads)
    return step


def side_by_side_step_seconds(jobs: dict[str, dict]) -> dict[str, float]:
    """:func:`step_seconds` of every job, timed while all of them run at once,
    one process and one thread each, as the demo trains them.

    Timed alone, a step does not tell what it costs beside others: on the
    2-core Intel Xeon with AMX (2026-12-06) the demo's WSM step took 0.21 s
    alone and 0.54 s with the three models side by side, 1.7x more than
    their share of the cores foretold (caches and the matrix units shared).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(jobs), timeout=600)
        with ProcessPoolExecutor(len(jobs), mp_context=ctx) as pool:
            futures = {
                name: pool.submit(step_seconds, job, barrier=barrier)
                for name, job in jobs.items()
            }
            errors = [f.exception() for f in futures.values()]
    # the cause, not the broken barrier it left the others at
    causes = [e for e in errors if e and not isinstance(e, BrokenBarrierError)]
    if causes or any(errors):
        raise (causes or list(filter(None, errors)))[0]
    return {name: f.result() for name, f in futures.items()}


def fit_step_count(
    seconds: dict[str, float], budget: float, most: int
) -> tuple[int, float]:
    """Steps of runs trained side by side that fit ``budget`` seconds.

    ``seconds``: one training step of each run, timed side by side
    (:func:`side_by_side_step_seconds`). A step of the stage costs the
    slowest run's step, times :data:`RECIPE_OVERHEAD`. Returns (steps,
    seconds per step): at most ``most``, at least :data:`MIN_STEPS`.

    Example
    -------
    >>> steps, per_step = fit_step_count({"a": 1.0, "b": 0.8}, 1200.0, 2155)
    >>> steps, round(per_step, 3)  # the slowest run, times RECIPE_OVERHEAD (1.6)
    (750, 1.6)
    >>> fit_step_count({"a": 0.2}, 1200.0, 2155)[0]  # fast: all of them
    2155
    """
    per_step = RECIPE_OVERHEAD * max(seconds.values())
    return max(MIN_STEPS, min(most, int(budget / per_step))), per_step


class Demo:
    """The demo's stages over one work folder."""

    #: the stage whose facts say how the from-scratch steps were fitted
    fit_stage = FIT_STAGE

    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.s = sizes(args.quick, args.scale)
        self.corpora = self.work / "corpora"
        self.manifests = self.work / "manifests"
        self.logs = self.work / "logs"
        self.lm_dir = self.work / "lm"
        self.run_opts = [f"--device={args.device}"]

    # -- data -----------------------------------------------------------------
    def build_synthetic(self):
        from speechbrain_wsm.data.synthetic import build_synthetic_corpus

        build_synthetic_corpus(
            str(self.corpora / "synthetic"),
            hours=self.s["synthetic_hours"],
            dev_minutes=self.s["dev_minutes"],
            test_minutes=self.s["test_minutes"],
            train_speakers=self.s["train_speakers"],
            workers=self.args.workers,
            seed=0,
        )

    def build_real(self):
        from speechbrain_wsm.data.debian_corpus import build_debian_corpus

        build_debian_corpus(str(self.corpora / "real"), workers=self.args.workers)

    def build_rirs(self):
        from speechbrain_wsm.data.rirs import build_rirs

        build_rirs(self.corpora / "rirs", count=self.s["rirs"], seed=0)

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
        split_by_speaker(self.manifests / "test-real.csv", REAL_SOURCES)
        return {
            name: _hours(self.manifests / f"{name}.csv")
            for name in (
                "train-synth",
                "train-real-10min",
                "librilight-10min",
                "dev-synth",
                "test-synth",
                *TEST_SETS[1:],
            )
        }

    def language_model(self):
        """Word n-gram LM and lexicon: the Bible text less the corpus's dev and
        test chapters and sentences, plus the transcripts of train-real-10min."""
        from speechbrain_wsm.data.lm import build_word_lm, kjv_sentences

        # Every dev and test sentence is left out of the LM text; the real
        # test set's prompts of one to three words ("ONE", "PLEASE HOLD") are
        # phrases, not sentences: leaving out every verse holding one would
        # leave out nine verses in ten.
        real = self.manifests / "lm-exclude-test-real.csv"
        _keep_rows(self.manifests / "test-real.csv", real, min_words=4)
        exclude = [self.manifests / f"{n}.csv" for n in ("dev-synth", "test-synth")]
        exclude.append(real)
        with open(self.manifests / "train-real-10min.csv", newline="") as f:
            real = [row["wrd"] for row in csv.DictReader(f)]
        lm, lexicon = build_word_lm(
            kjv_sentences(exclude, seed=0) + real,
            self.lm_dir,
            order=self.s["lm_order"],
            exclude_manifests=exclude,
            binary=True,
        )
        info = json.loads((self.lm_dir / "lm.json").read_text())
        return {
            "lm": lm,
            "lexicon": lexicon,
            "order": self.s["lm_order"],
            "sentences": info["sentences"],
            "excluded": info["dropped_evaluation_sentences"],
            "words": info["lexicon_words"],
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
    def _job(
        self,
        recipe: Path,
        yaml: str,
        out: Path,
        overrides: dict,
        log: str,
        run_opts: list[str] | None = None,
    ):
        return {
            "script": recipe / "train.py",
            "hparams": recipe / "hparams" / yaml,
            "overrides": {"output_folder": out, "num_workers": 0, **overrides},
            "log": self.logs / f"{log}.log",
            "run_opts": self.run_opts + (run_opts or []),
        }

    def scratch_precision(self) -> list[str]:
        """bf16 autocast for the from-scratch runs where the CPU multiplies bf16.

        With no dropout, it takes the demo's Conformers about half the time
        per step of fp32 on an AVX512-BF16 CPU (the CTC README's small-data
        settings); where bf16 would be emulated, fp32.
        """
        from speechbrain_wsm.recipe.experiment import cpu_has_native_bf16

        if self.args.device == "cpu" and cpu_has_native_bf16():
            return ["--precision=bf16"]
        return []

    def _run(self, jobs) -> None:
        run_recipes(jobs, threads=None if self.args.device == "cpu" else 1)

    def _encoder(self) -> dict:
        return {k: self.s[k] for k in ("d_model", "num_layers", "nhead", "d_ffn")}

    def _decoding(self) -> dict:
        """The recipe keys that add LM + lexicon decoding to greedy decoding."""
        lm = stage_facts(self.work, "language model")
        return {
            "extra_decoders": ["lexicon"],
            "kenlm_model_path": lm["lm"],
            "lexicon": lm["lexicon"],
            **LM_DECODING,
        }

    def scratch_job(
        self,
        mixer: str,
        train: list[str],
        out: Path,
        steps: int | None = None,
        small_data: bool = True,
        seed: int = 1986,
        **extra,
    ):
        """The from-scratch CTC recipe on the ``train`` splits, for about ``steps`` steps.

        ``small_data``: the recipe's settings for small data (README of the
        recipe): speed perturbation and noise; the schedule and batches are
        the same either way.
        """
        steps = steps or self.scratch_steps()
        # Both recognisers subsample with two 1-D convolutions over time,
        # the mel bins as channels, as wide as the encoder: for the offline
        # one a fifth of the time of SpeechBrain's 2-D front end at this size
        # with no loss of CER (CTC README, small data); for the streaming one
        # the channels are its latent's width ([16, 32] was a bottleneck)
        width = [self.s["d_model"]] * 2
        if "streaming" in mixer:
            front_end = {"frontend_channels": width}
        else:
            front_end = {"frontend_conv": "1d", "cnn_channels": width}
        reverb = small_data and self.args.reverb
        per_epoch = batches_per_epoch(
            [self.manifests / f"{_manifest_name(t)}.csv" for t in train],
            self.s["scratch_batch"],
        )
        overrides = {
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "manifest_folder": self.manifests,
            "train_splits": train,
            "dev_splits": ["dev-synth"],
            "test_splits": list(TEST_SETS),
            "number_of_epochs": math.ceil(steps / per_epoch),
            "seconds_per_batch": self.s["scratch_batch"],
            "kernel_size": self.s["kernel_size"],
            **front_end,
            "spec_augment": False,
            # the CTC README's small-data settings: a slow warm-up (a fast one
            # holds CTC on its blank plateau), a long hold, a short decay
            "lr": 0.0015,
            "warmup": 0.4,
            "hold": 0.4,
            "speed_perturb": small_data,
            "add_noise": small_data,
            "add_reverb": reverb,
            # the models underfit at this scale (train loss near valid loss):
            # dropout only slows them, and costs a sixth of a CPU step
            "dropout": 0.0,
            "head_dropout": 0.0,
            "seed": seed,
            **self._decoding(),
            **self._encoder(),
            **extra,
        }
        if reverb:
            overrides["rir_csv"] = self.corpora / "rirs" / "rirs.csv"
        if mixer == "wsm":
            overrides.setdefault("window_size", self.s["window_size"])
        return self._job(
            SCRATCH,
            f"conformer_{mixer}.yaml",
            out,
            overrides,
            f"scratch_{out.name}",
            [*self.scratch_precision(), f"--optimizer_step_limit={steps}"],
        )

    def scratch_steps(self) -> int:
        """The steps of every from-scratch run: fitted to this CPU where measured."""
        fitted = stage_facts(self.work, FIT_STAGE)
        return fitted["steps"] if fitted else self.s["scratch_steps"]

    def fit_steps(self) -> dict:
        """Fit the from-scratch step count to ``--minutes`` on this machine.

        The three from-scratch models' training steps are timed on a batch of
        the demo's size, side by side, one process and thread each, as they
        train (:func:`side_by_side_step_seconds`); a step of the stage costs
        the slowest one's, times the recipe's own overhead (data loading,
        logging, validation: :data:`RECIPE_OVERHEAD`). What the budget leaves
        after the stages so far (with ``--all``, every stage of fixed size)
        and the decoding (:data:`DECODE_MINUTES` a stage) is shared equally
        by the stages that train this many steps (one by default; with
        ``--all`` also the second seeds and the ablation beside the streaming
        recogniser, which train at equal steps so that they compare); never
        more than the default's steps, never fewer than :data:`MIN_STEPS`
        (CTC's blank plateau: below that the models learn nothing worth the
        minutes).
        """
        most = self.s["scratch_steps"]
        facts = {"steps": most, "most": most, "fitted": False}
        if self.args.quick or self.args.device != "cpu" or self.args.minutes <= 0:
            return facts
        seconds = side_by_side_step_seconds(
            {m: self.scratch_job(m, self.train_sets(), self.work, 1) for m in MIXERS}
        )
        spent = sum(
            (stage_facts(self.work, st.name) or {}).get("seconds", 0.0)
            for st in self.stages()
        )
        n = len(self._fitted_stages())
        left = 60 * (self.args.minutes - n * DECODE_MINUTES) - spent
        steps, per_step = fit_step_count(seconds, left / n, most)
        return {
            **facts,
            "steps": steps,
            "fitted": steps < most,
            "stages": n,
            "step_seconds": {m: round(t, 3) for m, t in seconds.items()},
            "stage_step_seconds": round(per_step, 3),
        }

    def train_sets(self, fold: str = "train-synth") -> list[str]:
        return [fold, "train-real-10min"]

    def scratch(self, seed: int = 1986, folder: str = "scratch"):
        out = self.work / folder
        jobs = [
            self.scratch_job(m, self.train_sets(), out / m, seed=seed) for m in MIXERS
        ]
        self._run(jobs)
        return {m: _run_facts(out / m) for m in MIXERS}

    def ablation_and_streaming(self):
        """Two single runs side by side, one CPU thread each.

        The ablation: WSM without the small-data additions (synthetic speech
        only, no augmentation). The streaming recogniser: an LLSA Conformer
        trained as the offline ones, with its look-ahead measured.
        """
        ablation = self.work / "ablation" / "wsm_synth_only"
        llsa = self.work / "streaming" / "llsa"
        self._run(
            [
                self.scratch_job("wsm", ["train-synth"], ablation, small_data=False),
                self.scratch_job("streaming_llsa", self.train_sets(), llsa),
            ]
        )
        return {
            "wsm_synth_only": _run_facts(ablation),
            "llsa": {**_run_facts(llsa), "lookahead": measure_lookahead(llsa)},
        }

    def window_sweep(self):
        """From-scratch WSM at several windows, long enough to leave the plateau."""
        out = self.work / "sweep"
        windows = self.s["sweep_windows"]
        jobs = [
            self.scratch_job(
                "wsm",
                self.train_sets(),
                out / f"window_{w}",
                steps=self.s["sweep_steps"],
                window_size=w,
            )
            for w in windows
        ]
        self._run(jobs)
        return {f"window_{w}": _run_facts(out / f"window_{w}") for w in windows}

    def pretrain(self):
        jobs = []
        for mixer in MIXERS:
            overrides = {
                "data_folder": self.corpora / "synthetic" / "LibriSpeech",
                "skip_prep": True,
                "train_csv": self.manifests / "train-synth.csv",
                "valid_csv": self.manifests / "dev-synth.csv",
                "number_of_epochs": self.s["pretrain_epochs"],
                "optimizer_step_limit": self.s["pretrain_steps"],
                "extractor_dim": self.s["extractor_dim"],
                "final_dim": self.s["final_dim"],
                "seconds_per_batch": 60,
                "grad_accumulation_factor": 1,
                "warmup": 0.1,  # shares of the run's steps
                "cooldown": 0.5,
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

    def probe_job(self, source: Path, out: Path, log: str):
        """The MP3S probe (BiLSTM on cached features) of the frozen encoder ``source``."""
        self._stage_manifests(out, ["librilight-1h", "dev-synth", *TEST_SETS])
        overrides = {
            "ssl_source": source,
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
        return self._job(PROBE, "ssl.yaml", out, overrides, log)

    def probe(self):
        jobs = [
            self.probe_job(
                self.work / "pretrain" / m, self.work / "probe" / m, f"probe_{m}"
            )
            for m in MIXERS
        ]
        self._run(jobs)
        return {m: _run_facts(self.work / "probe" / m) for m in MIXERS}

    def laser(self):
        """LASER fine-tuning of the pretrained MHSA encoder on train-synth.

        The recipe's ``laser_project.yaml`` (top 2 layers and the final
        LayerNorm trained, soft-DTW divergence + IDM), shrunk to the budget by
        its own keys: ``laser_steps`` updates of one utterance each (up to
        8 s: soft-DTW's cost grows as T1 x T2), no accumulation, a rate of
        1e-4 (the recipe README's miniature settings, not the paper's).
        Exports ``laser/mhsa/model``, which :meth:`probe_after_laser` probes.
        """
        out = self.work / "laser" / "mhsa"
        steps = self.s["laser_steps"]
        overrides = {
            "ssl_source": self.work / "pretrain" / "mhsa",
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "train_csv": self.manifests / "train-synth.csv",
            "max_duration": 8.0,
            "optimizer_step_limit": steps,
            "number_of_epochs": 1,
            "grad_accumulation_factor": 1,
            "warmup_steps": 0.1,  # a share of the updates
            "lr": 0.0001,
            "log_interval": max(1, steps // 10),
        }
        self._run(
            [self._job(LASER, "laser_project.yaml", out, overrides, "laser_mhsa")]
        )
        return {"mhsa": _run_facts(out)}

    def probe_after_laser(self):
        """The probe of the MHSA encoder after LASER, with the command of its probe before."""
        out = self.work / "probe" / "mhsa_laser"
        self._run(
            [self.probe_job(self.work / "laser" / "mhsa", out, "probe_mhsa_laser")]
        )
        return {"mhsa_laser": _run_facts(out)}

    def finetune_overrides(self, fold: str, selective: bool = True) -> dict:
        """The ``fold``'s data, steps and rates; ``selective``: the selective
        fine-tuning recipe's own keys too (the feature-fusion recipe lacks them)."""
        overrides = {
            "ssl_source": self.work / "pretrain" / "mhsa",
            "data_folder": self.corpora / "synthetic" / "LibriSpeech",
            "skip_prep": True,
            "manifest_folder": self.manifests,
            "train_set": fold,
            "dev_splits": ["dev-synth"],
            "test_splits": list(TEST_SETS),
            "number_of_epochs": self.s[f"finetune_epochs_{fold}"],
            "seconds_per_batch": 60,
            "lr": 0.002,
            "hold": 0.6,
            "extra_decoders": [],
        }
        if selective:
            overrides.update(
                num_replaced_layers=min(2, self.s["num_layers"]),
                window_size=self.s["window_size"],
                lr_pretrained=0.0005,  # full fine-tuning; mhsa_top uses lr
            )
        return overrides

    def low_resource(self, fold: str = "10min"):
        """Selective / top-2 MHSA / full fine-tuning, HFF + adapters and from
        scratch, on one fold, side by side (their step times compare).

        HFF + adapters (the feature-fusion recipe, a reconstruction): taps on
        every layer (the lower states of the demo's encoder read best, its
        README's layer study), FFN fusion blocks, adapters in every layer; the
        same data, steps and schedule as full fine-tuning.
        """
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
        out = outs["hff_adapters"] = self.work / "finetune" / f"hff_adapters_{fold}"
        overrides = {
            **self.finetune_overrides(fold, selective=False),
            "taps": 1,
            "d_fusion": self.s["fusion_dim"],
            "d_ffn_fusion": 2 * self.s["fusion_dim"],
            "adapter_dim": self.s["adapter_dim"],
        }
        jobs.append(
            self._job(
                FUSION,
                "hff_adapters.yaml",
                out,
                overrides,
                f"finetune_hff_adapters_{fold}",
            )
        )
        out = outs["scratch"] = self.work / "finetune" / f"scratch_{fold}"
        per_epoch = batches_per_epoch(
            [self.manifests / f"librilight-{fold}.csv"], self.s["scratch_batch"]
        )
        steps = self.s[f"finetune_epochs_{fold}"] * per_epoch
        jobs.append(self.scratch_job("wsm", [fold], out, steps=steps, small_data=False))
        self._run(jobs)
        return {name: _run_facts(path) for name, path in outs.items()}

    def transcribe(self, facts: dict):
        """The model best on dev transcribes a LibriVox sentence and an Asterisk prompt."""
        from speechbrain_wsm.transcribe import Transcriber

        runs = facts.get("from scratch: mhsa, sm, wsm", {})
        runs = {k: v for k, v in runs.items() if isinstance(v, dict) and "dev" in v}
        name = min(runs, key=lambda k: _dev_cer(runs[k]))
        folder = runs[name]["folder"]
        greedy = Transcriber.from_run(folder, device=self.args.device)
        # the run's YAML holds the LM and lexicon the demo gave it
        lm = Transcriber.from_run(folder, device=self.args.device, decoder="lexicon")
        out = {"model": name, "files": []}
        for split in ("test-real-librivox", "test-real-asterisk"):
            with open(self.manifests / f"{split}.csv", newline="") as f:
                rows = sorted(csv.DictReader(f), key=lambda r: -len(r["wrd"].split()))
            row = rows[len(rows) // 4]  # a sentence, not a single word
            out["files"].append(
                {
                    "split": split,
                    "file": row["wav"],
                    "reference": row["wrd"],
                    "greedy": greedy.transcribe_file(row["wav"]),
                    "lm": lm.transcribe_file(row["wav"]),
                }
            )
        return out

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
            Stage(
                "manifests", self.prepare, [self.manifests / "test-real-librivox.csv"]
            ),
        ]
        if self.args.reverb:
            st.append(
                Stage(
                    "room impulse responses",
                    self.build_rirs,
                    [self.corpora / "rirs" / "rirs.csv"],
                )
            )
        st.append(Stage("language model", self.language_model, [self.lm_dir]))
        # --all: the stages of fixed size first, so that the step fit divides
        # what is left of the budget among the stages whose steps it sets
        if self.args.all:
            st += self._fixed_size_stages()
        st += [Stage(FIT_STAGE, self.fit_steps), *self._fitted_stages()]
        return st

    def _fitted_stages(self) -> list[Stage]:
        """The stages that train :meth:`scratch_steps` steps (fitted to the budget)."""
        w = self.work
        st = [
            Stage(
                "from scratch: mhsa, sm, wsm",
                self.scratch,
                [w / "scratch" / m / "results.md" for m in MIXERS],
            )
        ]
        if not self.args.all:
            return st
        return st + [
            Stage(
                "from scratch, second seed",
                lambda: self.scratch(seed=2, folder="scratch_seed2"),
                [w / "scratch_seed2" / m / "results.md" for m in MIXERS],
            ),
            Stage(
                "ablation and streaming",
                self.ablation_and_streaming,
                [
                    w / "ablation" / "wsm_synth_only" / "results.md",
                    w / "streaming" / "llsa" / "results.md",
                ],
            ),
        ]

    def _fixed_size_stages(self) -> list[Stage]:
        """``--all``'s stages whose sizes are set in :data:`SIZES`, not fitted."""
        w = self.work
        return [
            Stage("benchmark: layers", self.bench, [w / "bench" / "layers_cpu.png"]),
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
            Stage(
                "LASER: mhsa",
                self.laser,
                [w / "laser" / "mhsa" / "model"],
            ),
            Stage(
                "probe: mhsa after LASER",
                self.probe_after_laser,
                [w / "probe" / "mhsa_laser" / "results.md"],
            ),
            Stage(
                "low-resource: 10min",
                self.low_resource,
                [
                    w / "finetune" / f"{n}_10min" / "results.md"
                    for n in (*FT_MODES, "hff_adapters", "scratch")
                ],
            ),
            Stage(
                "sweep: wsm window",
                self.window_sweep,
                [
                    w / "sweep" / f"window_{x}" / "results.md"
                    for x in self.s["sweep_windows"]
                ],
            ),
        ]


def measure_lookahead(run: Path) -> str:
    """The look-ahead of a trained run's encoder, and its front end's window."""
    from speechbrain_wsm.latency import describe

    return "; ".join(describe(str(run))).replace("look-ahead: ", "")


def split_by_speaker(manifest: Path, parts: dict[str, str]) -> None:
    """Write ``<name>.csv`` beside ``manifest`` for each ``{name: spk_id}``: its rows."""
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    for name, speaker in parts.items():
        with open(
            manifest.parent / f"{name}.csv", "w", newline="", encoding="utf-8"
        ) as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(r for r in rows if r["spk_id"] == speaker)


def _keep_rows(manifest: Path, out: Path, min_words: int) -> None:
    """Copy the rows of ``manifest`` whose transcript has ``min_words`` words or more."""
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for r in rows if len(r["wrd"].split()) >= min_words)


def _manifest_name(split: str) -> str:
    """The manifest of a training split: Libri-light folds are ``librilight-<fold>``."""
    from speechbrain_wsm.recipe.asr import LIBRILIGHT_SETS

    return f"librilight-{split}" if split in LIBRILIGHT_SETS else split


def batches_per_epoch(manifests, seconds: float, max_duration: float = 25.0) -> int:
    """Batches an epoch of the CTC recipe takes over ``manifests`` (packed batches)."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_wsm.recipe.dataio import PackedBatchSampler

    data = {}
    for path in manifests:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if float(row["duration"]) <= max_duration:
                    data[f"{Path(path).stem}/{row['ID']}"] = {
                        "duration": float(row["duration"])
                    }
    return max(1, len(PackedBatchSampler(DynamicItemDataset(data), seconds)))


def _hours(csv_path: Path) -> float:
    with open(csv_path, newline="") as f:
        return round(sum(float(r["duration"]) for r in csv.DictReader(f)) / 3600, 3)


_VALID = re.compile(r"valid CER: ([0-9.eE+-]+), valid WER: ([0-9.eE+-]+)")


def _run_facts(out: Path) -> dict:
    """What the report needs of one CTC run: rates, cost, losses, dev CER, parameters."""
    cost_file = out / "train_cost.json"
    log = out / "train_log.txt"
    dev = [
        (float(c), float(w))
        for c, w in _VALID.findall(log.read_text() if log.exists() else "")
    ]
    return {
        "folder": str(out),
        "rates": read_error_rates(out),
        "cost": json.loads(cost_file.read_text()) if cost_file.exists() else {},
        "losses": read_train_log(log),
        "dev": {"CER": [c for c, _ in dev], "WER": [w for _, w in dev]},
    }


def _dev_cer(run: dict) -> float:
    """The best validation CER of a run (how the recipe chose its checkpoint)."""
    return min(run.get("dev", {}).get("CER") or [math.inf])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir", default="results/demo", help="everything the demo writes"
    )
    p.add_argument("--quick", action="store_true", help="CI-sized run (a few minutes)")
    p.add_argument(
        "--all",
        action="store_true",
        help="add pretraining, probes, LASER, fine-tuning and HFF, the sweep, ablation "
        "and seeds",
    )
    p.add_argument(
        "--reverb",
        action="store_true",
        help="add reverberation (simulated rooms) to the from-scratch runs' "
        "augmentation; off: no gain at the default budget (README)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-time budget on a CPU (default 30, with --all 90): the "
        "from-scratch steps (at most the default's) are fitted to what the other "
        "stages leave of it on this machine; 0: no fitting",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every step and epoch count"
    )
    p.add_argument(
        "--workers", type=int, default=2, help="processes for corpus building"
    )
    p.add_argument("--redo", nargs="*", default=[], help="stage names to run again")
    args = p.parse_args(argv)
    if args.minutes is None:
        args.minutes = 90.0 if args.all else 30.0
    return args


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
