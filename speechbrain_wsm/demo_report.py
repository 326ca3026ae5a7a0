"""The demo's report: ``results.md`` with its tables, targets, claims and plots."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from speechbrain_wsm.bench.common import machine_description
from speechbrain_wsm.scoring import read_error_rates

SYNTH, REAL = "test-synth", "test-real"
ASTERISK, LIBRIVOX = "test-real-asterisk", "test-real-librivox"
FT_LABELS = {
    "scratch": "from scratch (WSM Conformer)",
    "wsm": "WSM top-2 selective",
    "mhsa_top": "MHSA top-2",
    "full": "full fine-tuning",
    "hff_adapters": "HFF + adapters (reconstruction)",
}
#: Differences under this many CER points need a second seed to mean anything.
NOISE_POINTS = 5.0
#: The demo's targets (issue 21): CER / WER in %.
TARGETS = {
    "scratch_cer": 20.0,  # best from-scratch model, test-synth, greedy
    "scratch_lm_wer": 30.0,  # the same with the LM and lexicon
    "librivox_words": 50.0,  # words right in one LibriVox sentence, at least
    "finetune_cer": 40.0,  # selective WSM on 10min (--all)
}


def _cell(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def _rate(run: dict, split: str, kind: str = "CER", decoder: str = "") -> float | None:
    key = f"{split}_{decoder}" if decoder else split
    return run.get("rates", {}).get(key, {}).get(kind)


def _runs(info) -> dict[str, dict]:
    """The runs a stage recorded (its facts less ``seconds`` and the like), with
    their error rates read again (a run re-scored with ``evaluate`` since)."""
    if not isinstance(info, dict):
        return {}
    runs = {k: v for k, v in info.items() if isinstance(v, dict) and "losses" in v}
    for run in runs.values():
        if run.get("folder") and Path(run["folder"]).is_dir():
            run["rates"] = read_error_rates(run["folder"]) or run.get("rates", {})
    return runs


def _precision_note(demo) -> str:
    """How the from-scratch runs computed: bf16 autocast or fp32."""
    if "--precision=bf16" in demo.scratch_precision():
        return "; bf16 autocast, which this CPU computes natively"
    return "; fp32"


def _first_step_seconds(run: dict) -> float | None:
    """Seconds per step of a run's first epoch (``train_log.txt``): the runs of a
    stage start together, so their first epochs share the machine alike."""
    import re

    log = Path(run.get("folder", "")) / "train_log.txt"
    first = log.read_text().splitlines()[:1] if log.is_file() else []
    found = re.search(r"step_s: ([0-9.e+-]+)", first[0]) if first else None
    return float(found.group(1)) if found else None


def _fit_note(fit: dict | None) -> list[str]:
    """A line saying how the from-scratch steps were fitted to the budget."""
    if not fit or "step_seconds" not in fit:
        return []
    timed = ", ".join(f"{m} {t:.2f} s" for m, t in fit["step_seconds"].items())
    head = (
        f"Steps fitted to `--minutes` on this CPU: {fit['steps']} of the default's "
        f"{fit['most']}"
        if fit["fitted"]
        else f"All {fit['steps']} steps fit `--minutes` on this CPU"
    )
    return [
        f"{head} (one training step of each, timed with the three side by "
        f"side, one thread each: {timed}; {fit['stage_step_seconds']:.2f} s per "
        "step of the stage with the recipe's overhead). On a slower CPU the demo trains fewer "
        "steps and ends at a higher error; `--minutes 0` trains them all.",
        "",
    ]


def _dev_cer(run: dict) -> float | None:
    cers = run.get("dev", {}).get("CER") or []
    return min(cers) if cers else None


def _ctc_table(runs: dict[str, dict], label: str = "run") -> list[str]:
    """One row per CTC run: cost, dev CER, and every test set greedy and with the LM."""
    lines = [
        f"| {label} | steps | s / step, epoch 1 | dev CER | {SYNTH} CER | {SYNTH} WER "
        f"| {SYNTH} WER, LM | {ASTERISK} CER | {LIBRIVOX} CER | {LIBRIVOX} WER, LM |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        cost = run.get("cost", {})
        cells = [
            name,
            str(cost.get("steps", "–")),
            _cell(_first_step_seconds(run), "{:.2f}"),
            _cell(_dev_cer(run)),
            _cell(_rate(run, SYNTH)),
            _cell(_rate(run, SYNTH, "WER")),
            _cell(_rate(run, SYNTH, "WER", "lexicon")),
            _cell(_rate(run, ASTERISK)),
            _cell(_rate(run, LIBRIVOX)),
            _cell(_rate(run, LIBRIVOX, "WER", "lexicon")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def _words_right(reference: str, hypothesis: str) -> float:
    """Share of the reference's words the hypothesis gets right (100 - WER, floored at 0)."""
    import jiwer

    return max(0.0, 100.0 * (1.0 - jiwer.wer(reference, hypothesis or "<empty>")))


def compare_claim(
    a_name: str,
    a: float | None,
    b_name: str,
    b: float | None,
    seeds: int,
    second_seed: str = "`--all` runs a second seed",
) -> str:
    """Whether ``a`` (a CER) matches or beats ``b``, given the noise of ``seeds`` seeds.

    ``second_seed`` says, when one seed cannot decide, where a second one is.
    """
    if a is None or b is None:
        return "cannot decide: a run is missing"
    diff = a - b
    if abs(diff) < NOISE_POINTS and seeds < 2:
        return (
            f"cannot decide from one seed: {a_name} {a:.1f} against {b_name} "
            f"{b:.1f} (under {NOISE_POINTS:.0f} points; {second_seed})"
        )
    if diff <= NOISE_POINTS / seeds:
        return f"supported: {a_name} {a:.1f} against {b_name} {b:.1f}"
    return f"contradicted: {a_name} {a:.1f} against {b_name} {b:.1f}"


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def write_report(demo, facts: dict) -> Path:
    """Write ``<workdir>/results.md`` and the plots; returns the markdown path."""
    work, args = demo.work, demo.args
    data = {
        k: v
        for k, v in facts["manifests"].items()
        if k not in ("seconds", "cpu_seconds")
    }
    stage_minutes = {
        name: (info["seconds"] / 60, info.get("cpu_seconds", 0.0) / 60)
        for name, info in facts.items()
        if isinstance(info, dict) and "seconds" in info
    }
    total = sum(wall for wall, _ in stage_minutes.values())
    cpu_total = sum(cpu for _, cpu in stage_minutes.values())
    mode = " --quick" if args.quick else ""
    mode += " --all" if args.all else ""
    mode += f" --device {args.device}" if args.device != "cpu" else ""
    mode += f" --scale {args.scale:g}" if args.scale != 1 else ""
    lines = [
        "# speechbrain-wsm demo results",
        "",
        f"{datetime.date.today().isoformat()}, {machine_description(args.device)}; "
        f"`python -m speechbrain_wsm.demo{mode}`; total {total:.1f} min. CER and "
        "WER in %; test-synth has voices never heard in training; every model "
        "is chosen on dev-synth and reported on the test sets. Greedy CTC "
        "decoding, and (`LM`) lexicon-constrained beam search with the demo's "
        "word n-gram language model.",
        "",
        "## Minutes per stage",
        "",
        "Wall-clock minutes, and CPU minutes of the demo and its recipe "
        "processes (on a machine shared with other work, CPU minutes / cores "
        "is what the stage takes alone).",
        "",
        "| stage | minutes | CPU minutes |",
        "|---|---|---|",
        *[
            f"| {name} | {wall:.1f} | {cpu:.1f} |"
            for name, (wall, cpu) in stage_minutes.items()
        ],
        f"| total | {total:.1f} | {cpu_total:.1f} |",
        "",
        "## Data (hours)",
        "",
        "| " + " | ".join(data) + " |",
        "|" + "---|" * len(data),
        "| " + " | ".join(f"{v:.2f}" for v in data.values()) + " |",
        "",
    ]
    lm = facts.get("language model", {})
    if lm:
        lines += [
            f"Language model: {lm.get('order', '?')}-gram over "
            f"{lm.get('sentences', '?')} sentences of public-domain text "
            f"({lm.get('excluded', '?')} dev or test sentences left out), "
            f"lexicon of {lm.get('words', '?')} words.",
            "",
        ]
    scratch = _runs(facts.get("from scratch: mhsa, sm, wsm"))
    seed2 = _runs(facts.get("from scratch, second seed"))
    lines += [
        "## From scratch: MHSA, SM and WSM Conformers at equal steps",
        "",
        f"{demo.s['num_layers']} x {demo.s['d_model']} Conformers, trained side by "
        "side (one CPU thread each) on train-synth + train-real-10min with the "
        "CTC recipe's small-data settings (packed batches of "
        f"{demo.s['scratch_batch']} s, speed perturbation and noise, no dropout, "
        "AdamW 1.5e-3 reached after a warm-up of 40 % of the steps, held for "
        f"40 %, then decayed){_precision_note(demo)}.",
        "",
        *_ctc_table(scratch, "mixer"),
        "",
        *_fit_note(facts.get(demo.fit_stage)),
    ]
    if seed2:
        lines += ["Second seed:", "", *_ctc_table(seed2, "mixer"), ""]
    claims, targets = [], []
    best = min(scratch, key=lambda k: _dev_cer(scratch[k]) or 1e9) if scratch else None
    if best:
        run = scratch[best]
        cer, lm_wer = _rate(run, SYNTH), _rate(run, SYNTH, "WER", "lexicon")
        targets.append(
            (
                f"best from-scratch model on dev ({best}): test-synth CER, greedy",
                f"≤ {TARGETS['scratch_cer']:.0f}",
                _cell(cer),
                _verdict(None if cer is None else cer <= TARGETS["scratch_cer"]),
            )
        )
        targets.append(
            (
                f"the same ({best}): test-synth WER with the LM",
                f"≤ {TARGETS['scratch_lm_wer']:.0f}",
                _cell(lm_wer),
                _verdict(
                    None if lm_wer is None else lm_wer <= TARGETS["scratch_lm_wer"]
                ),
            )
        )

    def mean_cer(mixer):
        return _mean([_rate(r[mixer], SYNTH) for r in (scratch, seed2) if mixer in r])

    seeds = 2 if seed2 else 1
    if {"mhsa", "sm", "wsm"} <= set(scratch):
        step = {m: _first_step_seconds(scratch[m]) for m in scratch}
        for mixer in ("sm", "wsm"):
            verdict = compare_claim(
                mixer.upper(), mean_cer(mixer), "MHSA", mean_cer("mhsa"), seeds
            )
            cost = (
                f"; first-epoch step {step[mixer]:.2f} s against "
                f"{step['mhsa']:.2f} s (side by side)"
                if step.get(mixer) and step.get("mhsa")
                else ""
            )
            claims.append(
                (
                    f"{mixer.upper()} matches MHSA (relative positions) at lower cost "
                    "(the SummaryMixing paper)",
                    f"test-synth CER, mean of {seeds} seed(s): {verdict}{cost}",
                )
            )
    t = facts.get("transcription") or {}
    librivox = [f for f in t.get("files", []) if f["split"] == LIBRIVOX]
    for f in librivox:
        right = max(
            _words_right(f["reference"], f["greedy"]),
            _words_right(f["reference"], f["lm"]),
        )
        targets.append(
            (
                "one LibriVox sentence (a voice never heard): words right",
                f"≥ {TARGETS['librivox_words']:.0f} %",
                f"{right:.0f} %",
                _verdict(right >= TARGETS["librivox_words"]),
            )
        )
    singles = _runs(facts.get("ablation and streaming"))
    ablation = {k: v for k, v in singles.items() if k == "wsm_synth_only"}
    if ablation and "wsm" in scratch:
        base = ablation["wsm_synth_only"]
        lines += [
            "## What a user would do for real speech: augmentation and 10 minutes of it",
            "",
            "The WSM run above against the same run on synthetic speech alone, "
            "without augmentation:",
            "",
            *_ctc_table(
                {
                    "wsm, synthetic only": base,
                    "wsm, small-data settings": scratch["wsm"],
                }
            ),
            "",
        ]
        for split in (ASTERISK, LIBRIVOX):
            claims.append(
                (
                    f"augmentation and train-real-10min improve {split}",
                    compare_claim(
                        "with",
                        _rate(scratch["wsm"], split),
                        "without",
                        _rate(base, split),
                        1,
                    ),
                )
            )
    if "llsa" in singles and "wsm" in scratch:
        llsa = singles["llsa"]
        lines += [
            "## A streaming recogniser: LLSA against the offline WSM model",
            "",
            "The same recipe, steps and data with the streaming LLSA Conformer "
            "(`conformer_streaming_llsa.yaml`: streaming attention over "
            "a bounded left context, random left contexts in training, a "
            f"look-ahead of one layer): look-ahead {llsa.get('lookahead', '?')}.",
            "",
            *_ctc_table({"llsa (streaming)": llsa, "wsm (offline)": scratch["wsm"]}),
            "",
        ]
        ratio = _ratio(_rate(llsa, SYNTH), _rate(scratch["wsm"], SYNTH))
        targets.append(
            (
                "streaming LLSA: test-synth CER against the offline WSM model",
                "≤ 1.3x",
                _cell(ratio, "{:.2f}x"),
                _verdict(None if ratio is None else ratio <= 1.3),
            )
        )
    sweep = _runs(facts.get("sweep: wsm window"))
    if sweep:
        lines += [
            "## WSM window sweep, from scratch",
            "",
            *_ctc_table(sweep, "window"),
            "",
        ]
    pretrain = _runs(facts.get("pretrain: mhsa, sm, wsm"))
    probes = _runs(facts.get("probe: mhsa, sm, wsm"))
    if probes:
        lines += [
            "## Pretraining and MP3S probing of the frozen encoders",
            "",
            "| context encoder | last valid loss | test-synth CER | test-real CER |",
            "|---|---|---|---|",
        ]
        for mixer, run in probes.items():
            valid = (pretrain.get(mixer, {}).get("losses") or {}).get("valid") or [None]
            lines.append(
                f"| {mixer} | {_cell(valid[-1], '{:.3f}')} | {_cell(_rate(run, SYNTH))} "
                f"| {_cell(_rate(run, REAL))} |"
            )
        lines.append("")
    laser = _runs(facts.get("LASER: mhsa")).get("mhsa")
    after = _runs(facts.get("probe: mhsa after LASER")).get("mhsa_laser")
    if laser and after and "mhsa" in probes:
        lines += _laser_section(demo, facts, laser, probes["mhsa"], after, claims)
    low = _runs(facts.get("low-resource: 10min"))
    if low:
        lines += [
            "## The `10min` fold: the pretrained MHSA model fine-tuned, against from scratch",
            "",
            *_ctc_table({FT_LABELS.get(k, k): v for k, v in low.items()}, "model"),
            "",
        ]
        wsm = _rate(low.get("wsm", {}), SYNTH)
        others = [_rate(low.get(k, {}), SYNTH) for k in ("full", "scratch")]
        ok = None
        if wsm is not None and None not in others:
            ok = wsm <= TARGETS["finetune_cer"] and all(wsm < o for o in others)
        targets.append(
            (
                "selective WSM on 10min: test-synth CER, below full fine-tuning and from scratch",
                f"≤ {TARGETS['finetune_cer']:.0f}",
                _cell(wsm),
                _verdict(ok),
            )
        )
        if "hff_adapters" in low and "full" in low:
            lines += _fusion_section(demo, low["hff_adapters"], low["full"], claims)
    lines += ["## Targets", "", "| target | aim | measured | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets]
    lines += ["", "## Claims, in miniature", "", "| claim | what this run shows |"]
    lines += ["|---|---|", *[f"| {a} | {b} |" for a, b in claims], ""]
    if t:
        lines += [
            "## Transcribing real speech with the model best on dev",
            "",
            f"`python -m speechbrain_wsm.transcribe <{t['model']} run> FILE` "
            "(and with `--decoder lexicon --kenlm ... --lexicon ...`):",
            "",
        ]
        for f in t["files"]:
            lines += [
                f"- {f['split']}, `{Path(f['file']).name}`",
                f"  - reference: {f['reference']}",
                f"  - greedy:    {f['greedy']}",
                f"  - with LM:   {f['lm']}",
            ]
        lines.append("")
    plot_losses(facts, work / "loss_curves.png")
    lines += ["![loss curves](loss_curves.png)", ""]
    if (work / "bench" / "layers_cpu.png").exists():
        shutil.copyfile(work / "bench" / "layers_cpu.png", work / "layers_cpu.png")
        lines += ["![layer benchmark](layers_cpu.png)", ""]
    lines.append(
        "What this can and cannot show: the models are small and trained for "
        "minutes on a CPU, mostly on synthetic speech. A CTC model first sits on "
        "the blank plateau (validation loss about 2.8, CER 100 %), and CER falls "
        "long before WER does. The real test set is one professional prompt "
        "speaker (whose other prompts are in train-real-10min) and one LibriVox "
        "reader, never heard: a smoke test of real speech, not a benchmark."
    )
    path = work / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _laser_section(demo, facts, laser, before, after, claims) -> list[str]:
    """LASER's probe before and after, and the claim's row (appended to ``claims``)."""
    cost = laser.get("cost", {})
    steps = cost.get("steps", "?")
    minutes = facts["LASER: mhsa"]["seconds"] / 60
    pretrain = facts.get("pretrain: mhsa, sm, wsm", {}).get("seconds")
    trained = _cell(cost.get("trainable_parameters"), "{:,}")
    lines = [
        "## LASER before and after: the probe of the pretrained MHSA encoder",
        "",
        "LASER (`laser_project.yaml`: the soft-DTW divergence between an "
        "utterance and its speed- and pitch-perturbed copy, plus the IDM "
        "regulariser) trained the top 2 layers and the final LayerNorm of the "
        f"pretrained MHSA encoder, with the projection head ({trained} of "
        f"{_cell(cost.get('parameters'), '{:,}')} parameters), for {steps} "
        "updates of one train-synth utterance each (up to 8 s; lr 1e-4, no "
        "accumulation: the recipe README's miniature settings, not the paper's "
        f"3600 updates of 8 utterances) in {minutes:.1f} minutes. The same MP3S "
        "probe as above (command and seed) then read the encoder it exported.",
        "",
        f"| encoder | dev CER | {SYNTH} CER | {SYNTH} WER | {REAL} CER | {REAL} WER |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in (
        ("pretrained MHSA (before)", before),
        (f"after LASER ({steps} updates)", after),
    ):
        cells = [_dev_cer(run), _rate(run, SYNTH), _rate(run, SYNTH, "WER")]
        cells += [_rate(run, REAL), _rate(run, REAL, "WER")]
        lines.append(f"| {name} | " + " | ".join(map(_cell, cells)) + " |")
    verdict = compare_claim(
        "after LASER",
        _rate(after, SYNTH),
        "before",
        _rate(before, SYNTH),
        1,
        "the demo runs LASER with one seed",
    )
    share = (
        f", {100 * minutes * 60 / pretrain:.0f} % of pretraining's {pretrain / 60:.1f} "
        "(three encoders side by side)"
        if pretrain
        else ""
    )
    claims.append(
        (
            "LASER improves content tasks (ASR, phoneme recognition) of a frozen "
            "SSL model at a small cost (the LASER paper)",
            f"probe test-synth CER: {verdict}; cost {minutes:.1f} minutes{share}; "
            "phoneme recognition is not probed here",
        )
    )
    return [*lines, ""]


def _fusion_section(demo, hff, full, claims) -> list[str]:
    """HFF + adapters against full fine-tuning, and the claim's row (to ``claims``)."""
    lines = [
        "## HFF + adapters against full fine-tuning (`10min`)",
        "",
        "The feature-fusion recipe's `hff_adapters.yaml` (a reconstruction, not "
        "from the paper: taps on every layer of the frozen encoder fused by "
        f"FFN blocks of {demo.s['fusion_dim']}, adapters of "
        f"{demo.s['adapter_dim']} in every layer) on the pretrained MHSA "
        "encoder, beside full fine-tuning of the same encoder in the stage "
        "above: the same fold, batches, steps and schedule, one CPU thread each "
        "(training minutes: steps at epoch 1's pace).",
        "",
        "| run | trained / all parameters | steps | s / step, epoch 1 | training "
        f"minutes | dev CER | {SYNTH} CER | {SYNTH} WER | {REAL} CER |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    minutes = {}
    for name, run in (("full fine-tuning", full), ("HFF + adapters", hff)):
        cost, step = run.get("cost", {}), _first_step_seconds(run)
        steps = cost.get("steps")
        minutes[name] = None if step is None or steps is None else steps * step / 60
        params = (
            f"{cost['trainable_parameters'] / 1e6:.2f} M / "
            f"{cost['parameters'] / 1e6:.2f} M"
            if "parameters" in cost
            else "–"
        )
        cells = [params, str(steps or "–"), _cell(step, "{:.2f}"), _cell(minutes[name])]
        cells += [_cell(_dev_cer(run)), _cell(_rate(run, SYNTH))]
        cells += [_cell(_rate(run, SYNTH, "WER")), _cell(_rate(run, REAL))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdict = compare_claim(
        "HFF + adapters",
        _rate(hff, SYNTH),
        "full fine-tuning",
        _rate(full, SYNTH),
        1,
        "the demo runs this pair with one seed",
    )
    trained = [r.get("cost", {}).get("trainable_parameters") for r in (hff, full)]
    share = _ratio(*trained)
    pace = _ratio(minutes["HFF + adapters"], minutes["full fine-tuning"])
    claims.append(
        (
            "HFF with adapters approaches full fine-tuning at a fraction of the "
            "trainable parameters and cost (Huo et al.; the recipe is a "
            "reconstruction)",
            f"`10min` test-synth CER: {verdict}; trains "
            f"{_cell(None if share is None else 100 * share)} % of full "
            f"fine-tuning's parameters in {_cell(None if pace is None else 100 * pace)} "
            "% of its training time (side by side, one seed)",
        )
    )
    return [*lines, ""]


def plot_losses(facts: dict, path: Path) -> None:
    """Validation CER per epoch of every CTC run, and pretraining's validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for stage, info in facts.items():
        for name, run in _runs(info).items():
            if stage.startswith("pretrain"):
                valid = run["losses"].get("valid")
                if valid:
                    axes[0].plot(
                        range(1, len(valid) + 1), valid, marker=".", label=name
                    )
                continue
            cer = run.get("dev", {}).get("CER")
            if cer:
                label = f"{stage.split(':')[0]}: {name}"
                axes[1].plot(range(1, len(cer) + 1), cer, marker=".", label=label)
    axes[0].set_title("wav2vec 2.0 pretraining: validation loss")
    axes[1].set_title("CTC runs: dev CER (%) per epoch")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
