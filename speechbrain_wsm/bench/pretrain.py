"""wav2vec 2.0 pretraining benchmark: step time and peak memory of MHSA, SM and WSM.

One pretraining step of the recipe's model
(``recipes/LibriSpeech/self-supervised-learning/wav2vec2``): fbank front end,
span masking (p = 0.65, 10 frames), Conformer context encoder, Gumbel
quantiser, contrastive loss with 100 negatives plus diversity loss, backward,
AdamW update. The models differ only in the mixer: the recipe's multi-head
self-attention (``mhsa``, SpeechBrain's ``MultiheadAttention`` with sine
positions, what ``wav2vec2_mhsa.yaml`` trains), SpeechBrain's relative
positional ``RelPosMHAXL`` (``relpos_mhsa``, its Conformer recipes'
attention), ``torch``'s ``scaled_dot_product_attention`` (``sdpa``: the
flash kernel on a GPU in bf16), SummaryMixing (``sm``) and Windowed
SummaryMixing (``wsm``, window ``--window-size``); ``--mixers`` picks.
Each batch holds ``--batch`` utterances of one length (16 s and 40 s by
default); layer drop is off so that every step does the same work.

* Time: interleaved best-of-N (see :mod:`speechbrain_wsm.bench.common`).
* Peak memory: everything the step needs at its peak, weights, AdamW state,
  gradients and activations: ``torch.cuda.max_memory_allocated`` on CUDA,
  the peak resident memory of a fresh process on CPU (minus its memory before
  the model was built).

Sizes: ``base`` is the recipe's (d_model 768, 12 layers, 8 heads, d_ffn 3072,
512 latent channels), run on CUDA; ``small`` (256, 4 layers, 4 heads, 1024,
256) is what CPU runs by default. The targets, on CUDA at the BASE size: SM
and WSM take at least 25 % less time and 30 % less peak memory than MHSA,
checked against each SpeechBrain attention (``mhsa`` and ``relpos_mhsa``;
the paper reports 18 % and 23 % for SM); the ratios to flash ``sdpa``, and
all ratios on CPU, are reported beside them.
Writes ``pretrain_<device>.csv`` / ``.json`` into ``--out`` and prints
markdown tables.

Run: ``python -m speechbrain_wsm.bench.pretrain`` (CPU, and CUDA when
present); ``--quick`` for a seconds-long smoke run.
"""

from __future__ import annotations

import numpy as np
import torch
from speechbrain.lobes.models.wav2vec import W2VTargetQuantiser

from speechbrain_wsm.bench.common import (
    autocast,
    bench_parser,
    lookup,
    measure_rows,
    report,
    step_devices,
    step_markdown,
)
from speechbrain_wsm.models.wav2vec2 import (
    FbankLatentExtractor,
    GumbelQuantiser,
    Wav2Vec2Loss,
    Wav2Vec2Pretrainer,
)
from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.recipe.dataio import SpanMaskCollate
from speechbrain_wsm.recipe.optim import make_optimizer

SAMPLE_RATE = 16000
#: the attentions SM and WSM are compared with; the targets apply to the
#: first two (SpeechBrain's), ``sdpa`` is reported only
ATTENTIONS = ("mhsa", "relpos_mhsa", "sdpa")
TARGET_BASELINES = ATTENTIONS[:2]
MIXERS = (*ATTENTIONS, "sm", "wsm")
SIZES = {
    "base": dict(d_model=768, num_layers=12, nhead=8, d_ffn=3072, latent=512),
    "small": dict(d_model=256, num_layers=4, nhead=4, d_ffn=1024, latent=256),
    "tiny": dict(d_model=32, num_layers=2, nhead=2, d_ffn=64, latent=32),
}
#: CUDA targets: SM / MHSA and WSM / MHSA at most these ratios
TARGETS = {"time_ms": 0.75, "peak_mib": 0.70}


def build_model(size: str, mixer: str, window_size: int) -> Wav2Vec2Pretrainer:
    """The recipe's pretraining model at ``size`` with ``mixer`` (no layer drop)."""
    cfg = SIZES[size]
    encoder = MixerEncoder(
        num_layers=cfg["num_layers"],
        d_model=cfg["d_model"],
        nhead=cfg["nhead"],
        d_ffn=cfg["d_ffn"],
        mixer=mixer,
        arch="conformer",
        dropout=0.1,
        kernel_size=31,
        activation="swish",
        layerdrop=0.0,
        # relative positions are inside RelPosMHAXL; the others add sines
        positional_encoding="none" if mixer == "relpos_mhsa" else "sine",
        mixer_kwargs={"window_size": window_size} if mixer == "wsm" else None,
    )
    latent = cfg["latent"]
    return Wav2Vec2Pretrainer(
        FbankLatentExtractor(channels=[latent, latent]),
        encoder,
        W2VTargetQuantiser(latent, 256, quantiser=GumbelQuantiser, num_vars=320),
        final_dim=256,
    )


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """The fused path: every ``MixerEncoder`` layer compiled in place
    (:meth:`~speechbrain_wsm.nnet.encoders.MixerEncoder.compile_layers`, as
    the recipes do), for every mixer alike."""
    for sub in model.modules():
        if isinstance(sub, MixerEncoder):
            sub.compile_layers()
    return model


class PretrainStep:
    """Build a model, optimiser and masked batch; calling it returns ``step()``."""

    def __init__(self, size, mixer, window_size, seconds, batch, dtype, compiled=False):
        self.args = (size, mixer, window_size, seconds, batch, dtype, compiled)

    def build(self, device: str):
        """The model (compiled or not) and the masked batch."""
        size, mixer, window_size, seconds, batch, dtype, compiled = self.args
        torch.manual_seed(0)
        np.random.seed(0)
        model = build_model(size, mixer, window_size).to(device).train()
        if compiled:
            compile_model(model)
        n = int(seconds * SAMPLE_RATE)
        items = [{"id": str(i), "sig": 0.1 * torch.randn(n)} for i in range(batch)]
        wavs, lens, mask = SpanMaskCollate(model.output_lengths, 0.65, 10)(items)
        return model, (wavs.to(device), lens.to(device), mask.to(device))

    def __call__(self, device: str):
        dtype = self.args[5]
        model, (wavs, lens, mask) = self.build(device)
        loss_fn = Wav2Vec2Loss(num_negatives=100)
        opt = make_optimizer(
            torch.optim.AdamW, model.parameters(), lr=1e-4, weight_decay=0.05
        )
        amp = autocast(device, dtype)

        def step():
            with amp:
                loss = loss_fn(model(wavs, lens, mask))["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step


def _params(size: str, window_size: int, mixers) -> dict:
    out = {}
    for mixer in mixers:
        with torch.device("meta"):
            model = build_model(size, mixer, window_size)
        out[mixer] = sum(p.numel() for p in model.parameters())
    return out


def size_and_batch(args, device: str) -> tuple[str, int]:
    """``--size`` and ``--batch``, or their defaults on ``device``."""
    cuda = device.startswith("cuda")
    return args.size or ("base" if cuda else "small"), args.batch or (8 if cuda else 2)


def run(args) -> list[dict]:
    rows = []

    def settings(device):
        size, batch = size_and_batch(args, device)
        return f"{size} size, batch {batch}, WSM window {args.window_size}"

    for device, dtype in step_devices(args, settings):
        size, batch = size_and_batch(args, device)
        params = _params(size, args.window_size, args.mixers)
        for seconds in args.lengths:
            makers = {
                m: PretrainStep(
                    size, m, args.window_size, seconds, batch, dtype, args.compile
                )
                for m in args.mixers
            }
            columns = {
                m: {
                    "device": device,
                    "size": size,
                    "mixer": m,
                    "seconds": seconds,
                    "batch": batch,
                    "params": params[m],
                }
                for m in args.mixers
            }
            rows += measure_rows(
                makers, device, args, columns, include_model=True, width=5
            )
    return rows


def check_targets(rows) -> list[dict]:
    """SM / attention and WSM / attention time and peak memory at each length.

    On CUDA the targets are time <= 0.75 and peak memory <= 0.70 (25 % and
    30 % less) against each of ``TARGET_BASELINES``; the ratios to ``sdpa``,
    and every ratio on CPU, are reported only.
    """
    out = []
    for device in sorted({r["device"] for r in rows}):
        cuda = device.startswith("cuda")
        for seconds in sorted({r["seconds"] for r in rows if r["device"] == device}):
            for mixer in ("sm", "wsm"):
                for base in ATTENTIONS:
                    for key, what in (("time_ms", "time"), ("peak_mib", "peak memory")):
                        at = dict(device=device, seconds=seconds)
                        num = lookup(rows, key, mixer=mixer, **at)
                        den = lookup(rows, key, mixer=base, **at)
                        if lookup(rows, "mixer", mixer=base, **at) is None:
                            continue  # a baseline not run (--mixers)
                        ratio = None if not num or not den else num / den
                        limit = (
                            TARGETS[key] if cuda and base in TARGET_BASELINES else None
                        )
                        bound = f" <= {limit}" if limit else " (info)"
                        name = f"{mixer.upper()} / {base} {what} at {seconds:g} s"
                        out.append(
                            {
                                "device": device,
                                "target": name + bound,
                                "measured": ratio,
                                "ok": None
                                if ratio is None or limit is None
                                else ratio <= limit,
                            }
                        )
    return out


def markdown(rows, device) -> str:
    """Parameters, then step time / peak memory per length, one row per mixer."""
    return step_markdown(rows, device, "mixer", MIXERS, "params", "params", "{:.1f} M")


def parse_args(argv=None):
    quick = dict(size="tiny", lengths=[1.5], batch=2, window_size=4)
    p = bench_parser(__doc__, quick={**quick, "rounds": 2, "budget": 0.5})
    p.add_argument(
        "--size",
        choices=sorted(SIZES),
        default=None,
        help="model size (default: base on CUDA, small on CPU)",
    )
    p.add_argument("--lengths", type=float, nargs="+", default=[16, 40], help="seconds")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="utterances per batch (default: 8 on CUDA, 2 on CPU)",
    )
    p.add_argument("--window-size", type=int, default=32, help="WSM window (frames)")
    p.add_argument(
        "--mixers", nargs="+", choices=MIXERS, default=list(MIXERS), metavar="M"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="every mixer's encoder layers through torch.compile(dynamic=True), "
        "as the recipes' compile_encoder",
    )
    p.add_argument(
        "--fill",
        action="store_true",
        help="largest batch per length within --memory-gb, its throughput and MFU, "
        "and every mixer at the largest batch that all fit (pretrain_fill)",
    )
    p.add_argument("--memory-gb", type=float, default=80.0)
    p.add_argument("--max-batch", type=int, default=512)
    p.add_argument(
        "--probe-batches",
        type=int,
        nargs=2,
        default=[2, 4],
        help="the two batches whose peaks give the bytes per utterance",
    )
    p.add_argument(
        "--fill-mixers",
        nargs="+",
        choices=MIXERS,
        default=["mhsa", "sm", "wsm"],
        metavar="M",
        help="mixers timed at their own fill batch",
    )
    p.add_argument(
        "--profile",
        choices=MIXERS,
        default=None,
        metavar="M",
        help="print and save a profiler table of one step of this mixer",
    )
    p.add_argument("--profile-batch", type=int, default=8)
    p.add_argument("--profile-rows", type=int, default=30)
    args = p.parse_args(argv)
    if args.quick:
        args.probe_batches, args.max_batch, args.profile_batch = [1, 2], 4, 2
        args.memory_gb = min(args.memory_gb, 4.0)
    return args


def fill_main(args) -> int:
    """``--fill`` / ``--profile``: see :mod:`speechbrain_wsm.bench.pretrain_fill`."""
    from speechbrain_wsm.bench import pretrain_fill as fill

    rows, code = [], 0

    def settings(device):
        size, _ = size_and_batch(args, device)
        return f"{size} size, compiled={args.compile}, WSM window {args.window_size}"

    for device, dtype in step_devices(args, settings):
        size, _ = size_and_batch(args, device)
        if args.profile:
            fill.profile_step(PretrainStep, args, device, dtype, size, args.out)
        if args.fill:
            rows += fill.run_fill(PretrainStep, args, device, dtype, size)
    if rows:
        meta = {"window_size": args.window_size, "memory_gb": args.memory_gb,
                "compiled": args.compile}  # fmt: skip
        code = report(rows, fill.fill_targets(rows), args.out, "pretrain_fill",
                      fill.fill_markdown, meta, args.check)  # fmt: skip
    return code


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.fill or args.profile:
        return fill_main(args)
    rows = run(args)
    meta = {"window_size": args.window_size}
    return report(
        rows, check_targets(rows), args.out, "pretrain", markdown, meta, args.check
    )


if __name__ == "__main__":
    raise SystemExit(main())
