"""The demo's report: ``results.md`` with its tables, and the loss-curve plot."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from speechbrain_wsm.bench.common import machine_description

TEST_SETS = ("test-synth", "test-real")


def _cell(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def _last(losses: dict, kind: str):
    values = (losses or {}).get(kind) or []
    return values[-1] if values else None


def plot_losses(facts: dict, path: Path) -> None:
    """Validation loss per epoch of the pretraining runs, training loss of the fine-tuning runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, info in facts.items():
        losses = info.get("losses") or {}
        if name.startswith("pretrain") and losses.get("valid"):
            axes[0].plot(
                range(1, len(losses["valid"]) + 1),
                losses["valid"],
                marker="o",
                label=name.split(": ")[1],
            )
        if name.startswith("finetune") and losses.get("train"):
            axes[1].plot(
                range(1, len(losses["train"]) + 1),
                losses["train"],
                marker=".",
                label=name.split(": ")[1],
            )
    axes[0].set_title("wav2vec 2.0 pretraining: validation loss")
    axes[1].set_title("selective fine-tuning: training CTC loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(demo, facts: dict) -> Path:
    """Write ``<workdir>/results.md`` and the plots; returns the markdown path."""
    work, args = demo.work, demo.args
    data = {k: v for k, v in facts["manifests"].items() if k != "seconds"}
    lines = [
        "# speechbrain-wsm demo results",
        "",
        f"{datetime.date.today().isoformat()}, {machine_description(args.device)}; "
        f"`python -m speechbrain_wsm.demo{' --quick' if args.quick else ''}"
        f"{f' --device {args.device}' if args.device != 'cpu' else ''}"
        f"{f' --scale {args.scale:g}' if args.scale != 1 else ''}`; "
        f"total {sum(i.get('seconds', 0) for i in facts.values()) / 60:.1f} min.",
        "",
        "## Data (hours)",
        "",
        "| " + " | ".join(data) + " |",
        "|" + "---|" * len(data),
        "| " + " | ".join(f"{v:.2f}" for v in data.values()) + " |",
        "",
        "## Pretraining and MP3S probing (WER %, greedy CTC, no LM)",
        "",
        "| context encoder | pretrain min | last valid loss | probe WER test-synth | probe WER test-real |",
        "|---|---|---|---|---|",
    ]
    for mixer in ("mhsa", "sm", "wsm"):
        pre, probe = (
            facts.get(f"pretrain: {mixer}", {}),
            facts.get(f"probe: {mixer}", {}),
        )
        wer = probe.get("wer", {})
        lines.append(
            f"| {mixer} | {_cell(pre.get('seconds', 0) / 60)} | {_cell(_last(pre.get('losses'), 'valid'), '{:.3f}')} "
            f"| {_cell(wer.get('test-synth'))} | {_cell(wer.get('test-real'))} |"
        )
    costs = {}
    bench = facts.get("benchmark: fine-tuning costs", {})
    for row in bench.get("rows", []):
        if not row.get("error"):
            costs.setdefault(row["mode"], row)
    lines += [
        "",
        "## Selective fine-tuning of the MHSA-pretrained model (WER %, greedy CTC, no LM)",
        "",
        "| mode | train set | first → last train loss | WER test-synth | WER test-real |",
        "|---|---|---|---|---|",
    ]
    for name, info in facts.items():
        if not name.startswith("finetune: "):
            continue
        mode, train_set = name[len("finetune: ") :].split(" on ")
        train = (info.get("losses") or {}).get("train") or [None]
        wer = info.get("wer", {})
        lines.append(
            f"| {mode} | {train_set} | {_cell(train[0], '{:.2f}')} → {_cell(train[-1], '{:.2f}')} "
            f"| {_cell(wer.get('test-synth'))} | {_cell(wer.get('test-real'))} |"
        )
    if costs:
        model = bench.get("meta", {}).get("model", "")
        lines += [
            "",
            f"Cost of one fine-tuning step per mode ({model}, `python -m speechbrain_wsm.bench.finetune`):",
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
        "What this can and cannot show: the models are tiny and trained for minutes "
        "on a CPU, on synthetic speech (the `10min`/`1h` folds are scaled to the "
        "synthetic pool). Pretraining lowers its contrastive loss and every CTC "
        "model's loss falls to the blank-only plateau (about 2.8); if a model has "
        "not got past that plateau its WER is about 100 % (above 100 % with "
        "insertions), so WER here proves the pipeline, not the quality of SM or "
        "WSM. The real-speech test set is about 95 % one speaker. The meaningful "
        "numbers at this scale are time, memory and trainable parameters; "
        "`--device cuda --scale 4` (or more) trains long enough for WER to move.",
    ]
    path = work / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path
