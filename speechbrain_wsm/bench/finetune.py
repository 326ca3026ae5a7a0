"""Selective fine-tuning benchmark: what each mode trains, costs in time and peaks in memory.

One CTC fine-tuning step (forward, CTC loss, backward, AdamW update) of a
wav2vec 2.0 BASE model (768 wide, 12 layers, 95 M parameters, built from a
config: random weights, no download) for each mode of
:func:`speechbrain_wsm.models.surgery.apply_finetuning_mode`:

* ``full``: every parameter but the CNN front end trains;
* ``mhsa_top``: only the self-attention of the top N layers trains;
* ``sm`` / ``wsm``: the top N self-attention modules are replaced by
  SummaryMixing / Windowed SummaryMixing blocks, and only those train;

plus the CTC head in every mode. Reported per mode and utterance length:
trainable parameters, step time (interleaved best-of-N, see
:mod:`speechbrain_wsm.bench.common`) and peak memory:

* CUDA: ``torch.cuda.max_memory_allocated`` over the step, everything the
  allocator holds included (weights, optimizer state, gradients,
  activations);
* CPU: peak resident memory of a fresh process per mode (from a clean fork
  server, see :mod:`speechbrain_wsm.bench.common`), minus its resident memory before
  the model was built: weights, optimizer state, gradients and activations,
  as on CUDA, without the interpreter and libraries.

The target: WSM with N = 2 peaks at least 45 % below full fine-tuning on GPU
(the WSM paper reports 40 % less peak VRAM); the CPU ratio is reported beside
it. Writes ``finetune_<device>.csv`` / ``.json`` into ``--out`` and prints a
markdown table.

Run: ``python -m speechbrain_wsm.bench.finetune`` (CPU, and CUDA when
present); ``--quick`` for a seconds-long smoke run on a tiny model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from speechbrain_wsm.bench.common import (
    TINY_HF_ARCH,
    autocast,
    bench_parser,
    in_child,
    lookup,
    measure_rows,
    preload,
    report,
    step_devices,
    step_markdown,
)
from speechbrain_wsm.recipe.optim import make_optimizer

SAMPLE_RATE = 16000
MODES = ("full", "mhsa_top", "sm", "wsm")
VOCAB = 32  # characters + blank, as the recipe's CTC head
CHARS_PER_SECOND = 15  # target length of the CTC loss

#: wav2vec 2.0 BASE, as ``Wav2Vec2Config()`` defines it, without layer drop
#: (random skipping would make the steps differ) and without attention
#: dropout (as fairseq's fine-tuning configurations): with it, PyTorch's CPU
#: attention falls back to the kernel that stores every frame x frame
#: attention matrix, which would inflate full fine-tuning's CPU peak (at 40 s:
#: 9.2 GiB instead of 2.7).
BASE = {"layerdrop": 0.0, "attention_dropout": 0.0}
#: A tiny model for ``--quick``: :data:`~speechbrain_wsm.bench.common.TINY_HF_ARCH`
#: twice as wide, with BASE's group-norm CNN and without layer drop.
TINY = {
    **TINY_HF_ARCH,
    "hidden_size": 64,
    "intermediate_size": 128,
    "conv_dim": (64, 64, 64),
    "feat_extract_norm": "group",
    **BASE,
}


def build_model(config_kwargs: dict, mode: str, num_layers: int, window_size: int):
    """A CTC fine-tuner on a wav2vec 2.0 model built from a config, set up for ``mode``."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechbrain_wsm.models.ssl_ctc import CTCFineTuner, TrainableSSLEncoder
    from speechbrain_wsm.models.surgery import apply_finetuning_mode

    ssl = Wav2Vec2Model(Wav2Vec2Config(**config_kwargs))
    model = CTCFineTuner(TrainableSSLEncoder(ssl), VOCAB)
    mixer_kwargs = {"window_size": window_size} if mode == "wsm" else {}
    apply_finetuning_mode(
        model, mode, num_layers, keep_trainable=["head"], **mixer_kwargs
    )
    return model


class FinetuneStep:
    """Build one mode's model, optimizer and batch; calling it returns ``step()``.

    ``step()`` runs one training step: forward, CTC loss, backward, AdamW
    update, gradients freed. ``threads`` sets torch's intra-op threads in the
    process that builds the step (None: leave the default).
    """

    def __init__(
        self,
        config_kwargs,
        mode,
        num_layers,
        window_size,
        seconds,
        batch,
        dtype,
        threads=None,
    ):
        self.model_args = (config_kwargs, mode, num_layers, window_size)
        self.seconds, self.batch, self.dtype = seconds, batch, dtype
        self.threads = threads

    def build(self) -> torch.nn.Module:
        """The model, ``model(wavs, rel_lens) -> (log_probs, rel_out_lens)``."""
        return build_model(*self.model_args)

    def __call__(self, device: str):
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(0)
        model = self.build().to(device)
        model.train()
        return ctc_step(model, self.seconds, self.batch, device, self.dtype)


def ctc_step(model, seconds: float, batch: int, device: str, dtype) -> Callable:
    """One CTC training step (forward, backward, AdamW) of ``model`` on random audio.

    ``model(wavs, rel_lens) -> (log_probs, rel_out_lens)`` as the recipes'
    CTC models; ``batch`` utterances of ``seconds`` s with character-rate
    random targets; autocast to ``dtype`` on CUDA. Returns the step function.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(torch.optim.AdamW, params, lr=1e-5)
    samples = int(seconds * SAMPLE_RATE)
    wav = 0.1 * torch.randn(batch, samples, device=device)
    lens = torch.ones(batch, device=device)
    n_targets = max(1, int(seconds * CHARS_PER_SECOND))
    targets = torch.randint(1, VOCAB, (batch, n_targets), device=device)
    target_lens = torch.full((batch,), n_targets, device=device)
    amp = autocast(device, dtype)

    def step():
        with amp:
            log_probs, out_lens = model(wav, lens)
        frames = torch.round(out_lens * log_probs.shape[1]).long()
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1).float(),
            targets,
            frames,
            target_lens,
            zero_infinity=True,
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _counts(config_kwargs, num_layers, window_size) -> dict:
    out = {}
    for mode in MODES:
        with torch.device("meta"):
            model = build_model(config_kwargs, mode, num_layers, window_size)
        out[mode] = {
            "trainable_params": sum(
                p.numel() for p in model.parameters() if p.requires_grad
            ),
            "total_params": sum(p.numel() for p in model.parameters()),
        }
    return out


def parameter_counts(config_kwargs, num_layers, window_size) -> dict:
    """Trainable and total parameters of each mode (built on the meta device)."""
    return in_child(_counts, config_kwargs, num_layers, window_size)


def run(args) -> list[dict]:
    preload(
        "speechbrain_wsm.models.finetuning",
        "transformers.models.wav2vec2.modeling_wav2vec2",
        __name__,
    )
    rows = []
    config = TINY if args.quick else BASE
    counts = parameter_counts(config, args.num_layers, args.window_size)
    settings = (
        f"{'tiny' if args.quick else 'BASE'} wav2vec 2.0, N = {args.num_layers}, "
        f"WSM window {args.window_size}, batch {args.batch}"
    )
    for device, dtype in step_devices(args, settings):
        for seconds in args.lengths:
            columns = {
                mode: {
                    "device": device,
                    "mode": mode,
                    "num_layers": args.num_layers,
                    "seconds": seconds,
                    **counts[mode],
                }
                for mode in MODES
            }
            rows += measure_ctc_steps(
                FinetuneStep, columns, config, seconds, device, dtype, args
            )
    return rows


def measure_ctc_steps(
    step_class, columns: dict, config, seconds, device, dtype, args, after=None, width=9
) -> list[dict]:
    """:func:`~speechbrain_wsm.bench.common.measure_rows` of ``step_class``'s step
    for each name of ``columns``, weights and optimiser state included.

    The steps are ``step_class(config, name, ..., seconds, ...)`` with the
    options of ``args`` (``--num-layers``, ``--window-size``, ``--batch``,
    ``--threads``).
    """
    makers = {
        name: step_class(
            config,
            name,
            args.num_layers,
            args.window_size,
            seconds,
            args.batch,
            dtype,
            args.threads,
        )
        for name in columns
    }
    return measure_rows(
        makers, device, args, columns, after, include_model=True, width=width
    )


def check_targets(rows) -> list[dict]:
    """WSM / full peak memory at each length: <= 0.55 on CUDA (45 % less), reported on CPU."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        for seconds in sorted({r["seconds"] for r in rows if r["device"] == device}):
            wsm = lookup(rows, "peak_mib", device=device, mode="wsm", seconds=seconds)
            full = lookup(rows, "peak_mib", device=device, mode="full", seconds=seconds)
            ratio = None if not wsm or not full else wsm / full
            limit = 0.55 if device.startswith("cuda") else None
            bound = f" <= {limit}" if limit else " (info)"
            out.append(
                {
                    "device": device,
                    "target": f"WSM / full peak memory at {seconds:g} s{bound}",
                    "measured": ratio,
                    "ok": None if ratio is None or limit is None else ratio <= limit,
                }
            )
    return out


def markdown(rows, device) -> str:
    """Trainable parameters, then step time / peak memory per length, one row per mode."""
    return step_markdown(
        rows, device, "mode", MODES, "trainable_params", "trainable params", "{:.2f} M"
    )


def parse_args(argv=None):
    # --quick: a tiny model, where threads only add contention
    quick = dict(lengths=[1, 2], rounds=2, budget=1.0, window_size=4, threads=1)
    p = bench_parser(__doc__, quick=quick)
    p.add_argument("--lengths", type=float, nargs="+", default=[16, 40], help="seconds")
    add_model_options(p)
    return p.parse_args(argv)


def add_model_options(p) -> None:
    """``--num-layers``, ``--window-size``, ``--batch``, ``--threads``."""
    p.add_argument(
        "--num-layers", type=int, default=2, help="N, top layers trained or replaced"
    )
    p.add_argument("--window-size", type=int, default=32, help="WSM window (frames)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )


def run_meta(args) -> dict:
    """The model and settings of a run, for the JSON."""
    return {
        "model": "tiny" if args.quick else "wav2vec 2.0 BASE (random weights)",
        "num_layers": args.num_layers,
        "window_size": args.window_size,
        "batch": args.batch,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = run(args)
    targets = check_targets(rows)
    return report(
        rows, targets, args.out, "finetune", markdown, run_meta(args), args.check
    )


if __name__ == "__main__":
    # The canonical module's objects, so that they pickle for the children.
    from speechbrain_wsm.bench.finetune import main as _main

    raise SystemExit(_main())
