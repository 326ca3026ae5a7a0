"""The demo's report: ``results.md`` with its tables, targets and plots."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from speechbrain_wsm.bench.common import machine_description

TEST_SETS = ("test-synth", "test-real")
FT_LABELS = {
    "scratch": "from scratch (WSM Conformer)",
    "wsm": "WSM top-2 selective",
    "mhsa_top": "MHSA top-2",
    "full": "full fine-tuning",
}


def _cell(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def _rates(run: dict) -> list[str]:
    """CER and WER cells of every test set."""
    cells = []
    for split in TEST_SETS:
        rate = run.get("rates", {}).get(split, {})
        cells += [_cell(rate.get("CER")), _cell(rate.get("WER"))]
    return cells


def _rate_heads() -> tuple[str, str]:
    heads = [f"{kind} {s}" for s in TEST_SETS for kind in ("CER", "WER")]
    return " | ".join(heads) + " |", "---|" * len(heads)


def _first_step_seconds(run: dict) -> float | None:
    """Seconds per step of a run's first epoch, from its ``train_log.txt``."""
    import re

    log = Path(run.get("folder", "")) / "train_log.txt"
    first = log.read_text().splitlines()[:1] if log.is_file() else []
    m = re.search(r"step_s: ([0-9.e+-]+)", first[0]) if first else None
    return float(m.group(1)) if m else None


def _runs(info) -> dict[str, dict]:
    """The runs a stage recorded (its facts less ``seconds`` and the like)."""
    if not isinstance(info, dict):
        return {}
    return {k: v for k, v in info.items() if isinstance(v, dict) and "losses" in v}


def _cer(run: dict) -> float | None:
    return run.get("rates", {}).get("test-synth", {}).get("CER")


def plot_losses(facts: dict, path: Path) -> None:
    """Validation CTC loss per epoch of every CTC run, and pretraining's validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for stage, info in facts.items():
        for name, run in _runs(info).items():
            valid = run["losses"].get("valid")
            if not valid:
                continue
            ax = axes[0] if stage.startswith("pretrain") else axes[1]
            label = (
                name
                if stage.startswith("pretrain")
                else f"{stage.split(':')[0]}: {name}"
            )
            ax.plot(range(1, len(valid) + 1), valid, marker=".", label=label)
    axes[0].set_title("wav2vec 2.0 pretraining: validation loss")
    axes[1].set_title("CTC runs: validation loss (blank plateau about 2.8)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(demo, facts: dict) -> Path:
    """Write ``<workdir>/results.md`` and the plots; returns the markdown path."""
    work, args = demo.work, demo.args
    data = {k: v for k, v in facts["manifests"].items() if k != "seconds"}
    heads, rule = _rate_heads()
    minutes = sum(i.get("seconds", 0) for i in facts.values() if isinstance(i, dict))
    targets = []
    lines = [
        "# speechbrain-wsm demo results",
        "",
        f"{datetime.date.today().isoformat()}, {machine_description(args.device)}; "
        f"`python -m speechbrain_wsm.demo{' --quick' if args.quick else ''}"
        f"{f' --device {args.device}' if args.device != 'cpu' else ''}"
        f"{f' --scale {args.scale:g}' if args.scale != 1 else ''}`; "
        f"total {minutes / 60:.1f} min. CER and WER in %, greedy CTC decoding, "
        "no language model; test-synth has voices unseen in training.",
        "",
        "## Data (hours)",
        "",
        "| " + " | ".join(data) + " |",
        "|" + "---|" * len(data),
        "| " + " | ".join(f"{v:.2f}" for v in data.values()) + " |",
        "",
        "## From scratch: MHSA, SM and WSM Conformers on train-synth, equal steps",
        "",
        f"| mixer | steps | s / step | peak MiB | {heads}",
        f"|---|---|---|---|{rule}",
    ]
    scratch = _runs(facts.get("from scratch: mhsa, sm, wsm"))
    for mixer, run in scratch.items():
        cost = run.get("cost", {})
        lines.append(
            f"| {mixer} | {cost.get('steps', '–')} | {_cell(cost.get('step_seconds'), '{:.3f}')} "
            f"| {_cell(cost.get('peak_memory_mb'), '{:.0f}')} | "
            + " | ".join(_rates(run))
            + " |"
        )
        targets.append((f"from scratch {mixer}", TARGETS_CER["scratch"], _cer(run)))
    first = {m: _first_step_seconds(r) for m, r in scratch.items()}
    if all(first.values()):
        fastest = min(first, key=first.get)
        lines += [
            "",
            "Seconds per step in the first epoch, while the three trained side by "
            "side with one CPU thread each (the same load for all): "
            + ", ".join(f"{m} {v:.2f}" for m, v in first.items())
            + f"; fastest per step: **{fastest}**. The table's column is the last "
            "epoch, when a run that finished earlier had left the machine to the "
            "others; the layer benchmark below times the mixers alone.",
        ]
    lines += [
        "",
        "## Pretraining and MP3S probing of the frozen encoders",
        "",
        f"| context encoder | last valid loss | {heads}",
        f"|---|---|{rule}",
    ]
    pretrain = _runs(facts.get("pretrain: mhsa, sm, wsm"))
    for mixer, run in _runs(facts.get("probe: mhsa, sm, wsm")).items():
        valid = (pretrain.get(mixer, {}).get("losses") or {}).get("valid") or [None]
        lines.append(
            f"| {mixer} | {_cell(valid[-1], '{:.3f}')} | "
            + " | ".join(_rates(run))
            + " |"
        )
        targets.append((f"probe of {mixer}", TARGETS_CER["probe"], _cer(run)))
    lines += [
        "",
        "The probe trains a BiLSTM on the weighted sum of the frozen encoder's "
        "layers on the `1h` fold.",
        "",
        "## Low-resource folds: pretrained MHSA model fine-tuned, against from scratch",
        "",
        f"| fold | model | trainable / all parameters | {heads}",
        f"|---|---|---|{rule}",
    ]
    for stage, info in facts.items():
        if not stage.startswith("low-resource: "):
            continue
        fold = stage.split(": ")[1]
        for name, run in _runs(info).items():
            lines.append(
                f"| {fold} | {FT_LABELS.get(name, name)} | {_params(run.get('cost', {}))} | "
                + " | ".join(_rates(run))
                + " |"
            )
            if name != "scratch":
                targets.append(
                    (f"{FT_LABELS[name]} on {fold}", TARGETS_CER["finetune"], _cer(run))
                )
    sweep = work / "sweep" / "sweep.md"
    if sweep.exists():
        lines += [
            "",
            "## WSM window sweep (selective fine-tuning on `10min`)",
            "",
            f"{demo.s['sweep_epochs']} epochs per window (the fine-tuning above: "
            f"{demo.s['finetune_epochs_10min']}), one run after the other.",
            "",
            "`python -m speechbrain_wsm.sweep recipes/LibriSpeech/ASR/selective-finetuning "
            "hparams/wsm.yaml --window_size=...`:",
            "",
            *[x for x in sweep.read_text().splitlines() if x.startswith("|")],
            "",
            "![CER against window](sweep/sweep_cer.png)",
        ]
    lines += [
        "",
        "## Targets (CER on test-synth)",
        "",
        "| run | target | measured | met |",
        "|---|---|---|---|",
    ]
    for name, target, value in targets:
        met = (
            "–"
            if value is None
            else ("yes" if value <= target else f"no (+{value - target:.1f})")
        )
        lines.append(f"| {name} | ≤ {target:.0f} | {_cell(value)} | {met} |")
    t = facts.get("transcription")
    if t:
        lines += [
            "",
            "## Transcribing a real-speech file with the best model",
            "",
            f"`python -m speechbrain_wsm.transcribe <{t['model']} run> {Path(t['file']).name}`",
            "",
            f"- reference:  {t['reference']}",
            f"- hypothesis: {t['hypothesis']}",
        ]
    costs = {}
    bench = facts.get("benchmark: fine-tuning costs", {})
    for row in bench.get("rows", []):
        if not row.get("error"):
            costs.setdefault(row["mode"], row)
    if costs:
        model = bench.get("meta", {}).get("model", "")
        lines += [
            "",
            f"## Cost of one fine-tuning step per mode ({model}, `python -m speechbrain_wsm.bench.finetune`)",
            "",
            "| mode | trainable parameters | length (s) | step time (ms) | peak memory (MiB) |",
            "|---|---|---|---|---|",
        ]
        for mode, row in costs.items():
            lines.append(
                f"| {mode} | {row.get('trainable_params', 0) / 1e6:.2f} M | {row.get('seconds')} "
                f"| {_cell(row.get('time_ms'), '{:.0f}')} | {_cell(row.get('peak_mib'), '{:.0f}')} |"
            )
    plot_losses(facts, work / "loss_curves.png")
    shutil.copyfile(work / "bench" / "layers_cpu.png", work / "layers_cpu.png")
    lines += [
        "",
        "![loss curves](loss_curves.png)",
        "",
        "![layer benchmark](layers_cpu.png)",
        "",
        "What this can and cannot show: the models are small and trained for "
        "minutes on a CPU, on synthetic speech (the `10min` and `1h` folds are "
        "scaled to the synthetic pool: see the data table). A CTC model first "
        "sits on the blank plateau (validation loss about 2.8, CER 100 %); the "
        "runs above leave it, and CER falls long before WER does. The real-speech "
        "test set is real speech (one professional voice-prompt speaker for the "
        "most part, and LibriVox readers), never heard in training: models "
        "trained on a few voices of synthetic speech alone do much worse "
        "there, as any model does on a domain it has never seen. `--device cuda --scale 4` (or more) runs "
        "the same story longer.",
    ]
    path = work / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _params(cost: dict) -> str:
    """``'0.30 / 2.18 M'``: trainable and all parameters, from ``train_cost.json``."""
    if "parameters" not in cost:
        return "–"
    return (
        f"{cost['trainable_parameters'] / 1e6:.2f} / {cost['parameters'] / 1e6:.2f} M"
    )


#: The demo's targets (CER %, test-synth).
TARGETS_CER = {"scratch": 35.0, "finetune": 60.0, "probe": 70.0}
