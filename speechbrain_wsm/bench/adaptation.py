"""One table of efficient adaptation methods: what each trains, costs in time and peaks in memory.

Every way this project adapts a pretrained SSL encoder to CTC ASR, side by
side, on one wav2vec 2.0 BASE model (768 wide, 12 layers, 95 M parameters,
built from a config: random weights, no download), one CTC training step
each (forward, CTC loss, backward, AdamW update):

* ``full``: full fine-tuning (everything but the CNN front end);
* ``mhsa_top``: the self-attention of the top N = 2 layers;
* ``wsm`` / ``sm``: selective fine-tuning, the top N self-attention modules
  replaced by new Windowed SummaryMixing / SummaryMixing blocks
  (:mod:`speechbrain_wsm.models.surgery`);
* ``adapters``: bottleneck adapters after every layer, a linear CTC head;
* ``hff_adapters``: hierarchical feature fusion with adapters;
* ``weighted_sum``: the MP3S featuriser over the frozen encoder, then the
  same blocks as HFF;
* ``hff``: hierarchical feature fusion over the frozen encoder (no backward
  through it).

The last four are :mod:`speechbrain_wsm.models.fusion`, a **reconstruction,
not from the paper** (Huo et al., ICASSP 2023; abstract only). Reported per
method: trainable *encoder* parameters (inside the SSL model: new blocks,
fine-tuned weights or adapters; count and % of the pretrained model's), all
trainable parameters (heads and fusion blocks included), and per utterance
length the step time (interleaved best-of-N) and peak memory, measured as
:mod:`speechbrain_wsm.bench.common` does (CUDA: ``max_memory_allocated``;
CPU: peak resident set of a fresh process), weights and optimiser state
included; plus CER / WER where a trained run is given (``--runs``).

Targets (CPU, BASE, 16 s; the paper's abstract: HFF + adapters trains 97 %
fewer encoder parameters and trains 53 % faster than full fine-tuning):
HFF + adapters trains <= 3 % of the encoder; HFF's step is >= 2x faster than
full fine-tuning's and peaks at <= 40 % of its memory; HFF + adapters' step
is >= 1.5x faster. ``--quick`` prints the same table for a tiny model in
seconds (targets reported, not judged). Writes ``adaptation_<device>.csv`` /
``.json`` into ``--out``.

Run: ``python -m speechbrain_wsm.bench.adaptation`` (CPU, and CUDA when
present).
"""

from __future__ import annotations

import torch

from speechbrain_wsm.bench.common import (
    bench_parser,
    in_child,
    lookup,
    preload,
    report,
    step_cells,
    step_devices,
)
from speechbrain_wsm.bench.finetune import (
    BASE,
    TINY,
    VOCAB,
    FinetuneStep,
    add_model_options,
    measure_ctc_steps,
    run_meta,
)
from speechbrain_wsm.bench.finetune import build_model as build_finetuner

#: Table order: from everything trained to nothing in the encoder trained.
METHODS = (
    "full",
    "mhsa_top",
    "wsm",
    "sm",
    "adapters",
    "hff_adapters",
    "weighted_sum",
    "hff",
)
LABELS = {
    "full": "full fine-tuning",
    "mhsa_top": "top-N MHSA",
    "wsm": "selective WSM",
    "sm": "selective SM",
    "adapters": "adapters*",
    "hff_adapters": "HFF + adapters*",
    "weighted_sum": "weighted sum*",
    "hff": "HFF*",
}
SELECTIVE = ("full", "mhsa_top", "sm", "wsm")
#: Fusion settings of the recipe's YAML (taps every 3rd layer of 12).
FUSION = {"taps": 3, "d_model": 256, "d_ffn": 1024, "adapter_dim": 64}
#: The same, scaled to ``--quick``'s tiny model (64 wide, 4 layers).
TINY_FUSION = {"taps": 2, "d_model": 32, "d_ffn": 64, "adapter_dim": 4}


def fusion_settings(config_kwargs: dict) -> dict:
    """:data:`FUSION` for a BASE-size config, :data:`TINY_FUSION` for smaller ones."""
    return FUSION if config_kwargs.get("hidden_size", 768) >= 768 else TINY_FUSION


def build_model(config_kwargs: dict, method: str, num_layers: int, window_size: int):
    """The model of ``method`` on a wav2vec 2.0 model built from a config.

    Returns
    -------
    model : torch.nn.Module
        ``model(wav, wav_lens) -> (log_probs, out_lens)``.
    encoder : torch.nn.Module
        The SSL model inside it (whose trainable parameters are counted as
        the encoder's).
    """
    if method in SELECTIVE:
        model = build_finetuner(config_kwargs, method, num_layers, window_size)
        return model, model.encoder.model
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechbrain_wsm.models.fusion import fusion_model

    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}; valid names: {', '.join(METHODS)}"
        )
    ssl = Wav2Vec2Model(Wav2Vec2Config(**config_kwargs))
    num_hidden = int(config_kwargs.get("num_hidden_layers", 12))
    fusion = fusion_settings(config_kwargs)
    taps = min(fusion["taps"], num_hidden)
    reader = {"hff": "hff", "hff_adapters": "hff", "weighted_sum": "weighted_sum"}
    model = fusion_model(
        ssl,
        VOCAB,
        reader.get(method, "last_layer"),
        adapters=method in ("adapters", "hff_adapters"),
        adapter_dim=fusion["adapter_dim"],
        taps=taps,
        d_model=fusion["d_model"],
        d_ffn=fusion["d_ffn"],
        # weighted sum: as many blocks as HFF has taps; adapters: a linear head
        num_blocks=len(range(num_hidden, 0, -taps)) if method == "weighted_sum" else 0,
    )
    return model, model.upstream


class AdaptationStep(FinetuneStep):
    """Build one method's model, optimiser and batch; calling it returns ``step()``.

    ``step()`` is one training step: forward, CTC loss, backward, AdamW
    update, gradients freed (:class:`~speechbrain_wsm.bench.finetune.FinetuneStep`
    with ``method`` for ``mode``).
    """

    def build(self) -> torch.nn.Module:
        return build_model(*self.model_args)[0]


def _counts(config_kwargs, num_layers, window_size) -> dict:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    with torch.device("meta"):
        pretrained = sum(
            p.numel()
            for p in Wav2Vec2Model(Wav2Vec2Config(**config_kwargs)).parameters()
        )
    out = {}
    for method in METHODS:
        with torch.device("meta"):
            model, encoder = build_model(config_kwargs, method, num_layers, window_size)
        enc = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
        out[method] = {
            "encoder_params": pretrained,
            "encoder_trainable": enc,
            "encoder_trainable_pct": round(100.0 * enc / pretrained, 3),
            "trainable_params": sum(
                p.numel() for p in model.parameters() if p.requires_grad
            ),
        }
    return out


def parameter_counts(config_kwargs, num_layers, window_size) -> dict:
    """Trainable parameters of each method (built on the meta device, in a child)."""
    return in_child(_counts, config_kwargs, num_layers, window_size)


def read_runs(items, split: str | None = None) -> dict:
    """``method=run_folder`` items -> ``{method: (split, CER, WER)}``.

    ``split``: the test split to read (default: each run's first, by name).
    """
    from speechbrain_wsm.scoring import read_error_rates

    out = {}
    for item in items or []:
        method, _, folder = item.partition("=")
        if method not in METHODS or not folder:
            raise SystemExit(
                f"--runs takes method=folder with a method of {', '.join(METHODS)}; "
                f"got {item!r}"
            )
        rates = read_error_rates(folder)
        if not rates:
            raise SystemExit(f"--runs: no cer_/wer_<split>.txt in {folder}")
        name = split or sorted(rates)[0]
        if name not in rates:
            raise SystemExit(f"--runs: no cer_/wer_{name}.txt in {folder}")
        out[method] = (name, rates[name].get("CER"), rates[name].get("WER"))
    return out


def run(args) -> list[dict]:
    preload(
        "speechbrain_wsm.models.finetuning",
        "speechbrain_wsm.models.fusion",
        "transformers.models.wav2vec2.modeling_wav2vec2",
        __name__,
    )
    config = TINY if args.quick else BASE
    counts = parameter_counts(config, args.num_layers, args.window_size)
    if "error" in counts:
        raise SystemExit(f"parameter counts failed: {counts['error']}")
    errors = read_runs(args.runs, args.split)
    scores = {}
    for m in METHODS:
        split, cer, wer = errors.get(m, (None, None, None))
        scores[m] = {"cer": cer, "wer": wer, "eval_split": split}
    methods = [m for m in METHODS if m in args.methods]
    rows = []
    settings = f"{'tiny' if args.quick else 'BASE'} wav2vec 2.0, batch {args.batch}"
    for device, dtype in step_devices(args, settings):
        for seconds in args.lengths:
            columns = {
                m: {"device": device, "method": m, "seconds": seconds, **counts[m]}
                for m in methods
            }
            rows += measure_ctc_steps(
                AdaptationStep,
                columns,
                config,
                seconds,
                device,
                dtype,
                args,
                after=scores,
                width=13,
            )
    return rows


def check_targets(rows, judged: bool = True) -> list[dict]:
    """The four targets at the shortest length of each device (judged on CPU)."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        seconds = min(r["seconds"] for r in rows if r["device"] == device)

        def get(method, key, d=device, s=seconds):
            return lookup(rows, key, device=d, method=method, seconds=s)

        def ratio(a, b):
            return None if not a or not b else a / b

        checks = [
            ("HFF + adapters: % of encoder parameters trained", "<=", 3.0,
             get("hff_adapters", "encoder_trainable_pct")),
            (f"full / HFF step time at {seconds:g} s", ">=", 2.0,
             ratio(get("full", "time_ms"), get("hff", "time_ms"))),
            (f"HFF / full peak memory at {seconds:g} s", "<=", 0.40,
             ratio(get("hff", "peak_mib"), get("full", "peak_mib"))),
            (f"full / (HFF + adapters) step time at {seconds:g} s", ">=", 1.5,
             ratio(get("full", "time_ms"), get("hff_adapters", "time_ms"))),
        ]  # fmt: skip
        for text, op, limit, value in checks:
            judge = judged and device == "cpu" and value is not None
            ok = (value <= limit if op == "<=" else value >= limit) if judge else None
            suffix = "" if judged and device == "cpu" else " (info)"
            out.append(
                {
                    "device": device,
                    "target": f"{text} {op} {limit:g}{suffix}",
                    "measured": value,
                    "ok": ok,
                }
            )
    return out


def markdown(rows, device) -> str:
    """One row per method: encoder parameters trained, all trained, time / peak per length, CER / WER."""
    rows = [r for r in rows if r["device"] == device]
    lengths = sorted({r["seconds"] for r in rows})
    cell = {(r["method"], r["seconds"]): r for r in rows}
    lines = [
        "| method | trained encoder params | trained params (all) | "
        + " | ".join(f"{s:g} s: step / peak" for s in lengths)
        + " | CER / WER |",
        "|" + "---|" * (len(lengths) + 4),
    ]
    for m in METHODS:
        first = cell.get((m, lengths[0])) if lengths else None
        if first is None:
            continue
        cells = step_cells(cell, m, lengths)
        errors = (
            "not trained here"
            if first.get("cer") is None
            else f"{first['cer']:.2f} / {first['wer']:.2f} ({first['eval_split']})"
        )
        lines.append(
            f"| {LABELS[m]} | {first['encoder_trainable'] / 1e6:.2f} M "
            f"({first['encoder_trainable_pct']:.2f} %) | "
            f"{first['trainable_params'] / 1e6:.2f} M | "
            + " | ".join(cells)
            + f" | {errors} |"
        )
    lines.append(
        "\n\\* reconstruction of hierarchical feature fusion (Huo et al., ICASSP "
        "2023), not from the paper. Peak memory includes weights, gradients and "
        "optimiser state."
    )
    return "\n".join(lines)


def parse_args(argv=None):
    # BASE steps take tens of seconds on a CPU: a budget for 3 rounds of 8
    quick = dict(rounds=2, budget=1.0, window_size=4, threads=1)
    p = bench_parser(__doc__, rounds=3, budget=900.0, quick=quick)
    p.add_argument(
        "--lengths",
        type=float,
        nargs="+",
        default=None,
        help="seconds (default 16 40; --quick: 1 2)",
    )
    p.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="M"
    )
    add_model_options(p)
    p.add_argument(
        "--runs",
        nargs="*",
        default=[],
        metavar="METHOD=FOLDER",
        help="trained recipe output folders whose CER / WER fill the table",
    )
    p.add_argument("--split", default=None, help="test split of --runs to show")
    args = p.parse_args(argv)
    args.lengths = args.lengths or ([1, 2] if args.quick else [16, 40])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = run(args)
    meta = {
        **run_meta(args),
        "fusion": fusion_settings(TINY if args.quick else BASE),
        "note": "adapters, HFF, HFF + adapters, weighted sum: reconstruction, "
        "not from the paper",
    }
    targets = check_targets(rows, judged=not args.quick)
    return report(rows, targets, args.out, "adaptation", markdown, meta, args.check)


if __name__ == "__main__":
    # The canonical module's objects, so that they pickle for the children.
    from speechbrain_wsm.bench.adaptation import main as _main

    raise SystemExit(_main())
