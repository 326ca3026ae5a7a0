"""Measure an encoder's algorithmic look-ahead from its dependency structure.

::

    python -m speechbrain_wsm.latency hparams/wav2vec2_streaming_llsa.yaml [--key=value ...]
    python -m speechbrain_wsm.latency results/wav2vec2_streaming_llsa_l32_r8/1986

The first form builds the model of a recipe YAML with the same overrides as
``train.py`` (run it from the recipe folder); the second rebuilds a trained
output folder (its ``hyperparams.yaml`` and last checkpoint). Either way the
context network (input projection, positions, encoder) runs in eval mode on
random latent frames (float64); input frame ``t`` is perturbed
infinitesimally (the Jacobian, see :func:`lookahead_frames`; SpeechBrain's
``infer_dependency_matrix`` is the finite version) and the earliest output
that changes, ``o``, gives a look-ahead of ``t - o`` frames; the maximum over
the probed frames is printed as::

    look-ahead: <F> frames (<M> ms)

It is measured, not read from the configuration: a positional convolution, a
non-causal convolution or an acausal mixer all show up. A look-ahead that
reaches the start of the longest probed sequence prints ``unbounded``.
The front end's own analysis window (25 ms fbank windows and valid
convolutions: 85 ms of audio per frame) is not in that count, which is in
encoder frames; a second line reports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from speechbrain.utils.streaming import infer_dependency_matrix

__all__ = ["lookahead_frames", "frame_ms", "context_network", "describe", "main"]


def lookahead_frames(
    fn: Callable[[torch.Tensor], torch.Tensor],
    feat_dim: int,
    frames: int = 64,
    probes: int = 16,
    max_frames: int = 1024,
    method: str = "jacobian",
    dtype: torch.dtype = torch.float32,
) -> int | None:
    """Look-ahead of ``fn`` in frames, from perturbing its inputs.

    Two ways to perturb input frame ``t`` and see which outputs change:

    * ``jacobian`` (default): an infinitesimal perturbation, i.e. the rows
      of the Jacobian. For each probed output ``o``, the gradient of a random
      projection of ``out[o]`` with respect to the input is nonzero exactly at
      the frames ``o`` depends on (masked attention weights and causal sums
      give exact zeros), however small the influence: at the edge of a
      12-layer band it passes through 12 attention weights of about
      ``1 / W`` each, far below float32 resolution of the output itself.
    * ``perturb``: SpeechBrain's
      :func:`~speechbrain.utils.streaming.infer_dependency_matrix` (a random
      new frame ``t``, ``allclose`` on the outputs). Exact for shallow
      stacks; it can miss that far edge of deep ones.

    Arguments
    ---------
    fn : callable
        ``[1, frame, feat_dim] -> [1, frame, out]``, deterministic (eval mode).
    feat_dim : int
        Input feature size.
    frames : int
        First sequence length tried; doubled while the look-ahead found
        reaches the sequence edge (it may be cut by it).
    probes : int
        About how many frames are probed per length.
    max_frames : int
        Longest sequence tried.
    method : str
        ``jacobian`` or ``perturb``.
    dtype : torch.dtype
        Input dtype (the model's).

    Returns
    -------
    int or None
        ``max (t - o)`` over the probed pairs where output ``o`` depends on
        input ``t``; None when still cut by the sequence edge at
        ``max_frames`` (an acausal model).

    Example
    -------
    >>> conv = torch.nn.Conv1d(2, 2, 5, padding=2)  # 2 frames each side
    >>> lookahead_frames(lambda x: conv(x.transpose(1, 2)).transpose(1, 2), 2)
    2
    """
    if method not in ("jacobian", "perturb"):
        raise ValueError(f"method must be 'jacobian' or 'perturb', got {method!r}")
    T = frames
    while True:
        stride = max(1, T // probes)
        if method == "perturb":
            best, cut = _perturbed(fn, feat_dim, T, stride)
        else:
            best, cut = _jacobian(fn, feat_dim, T, stride, dtype)
        if not cut:
            return best
        if T >= max_frames:
            return None
        T *= 2


def _perturbed(fn, feat_dim, T, stride):
    deps = infer_dependency_matrix(fn, (1, T, feat_dim), in_stride=stride)
    best, cut = 0, False
    for row, t in enumerate(range(0, T, stride)):
        changed = deps[row].nonzero()
        if len(changed) == 0:
            continue
        first = int(changed[0])
        best = max(best, t - first)
        cut |= first == 0 and t > 0 and t >= T // 2
    return best, cut


def _jacobian(fn, feat_dim, T, stride, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, T, feat_dim, generator=gen, dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        r = torch.randn(y.shape, generator=gen, dtype=y.dtype)
        best, cut = 0, False
        for o in range(0, y.shape[1], stride):
            (g,) = torch.autograd.grad(
                (y[:, o] * r[:, o]).sum(), x, retain_graph=True, allow_unused=True
            )
            if g is None:
                continue
            deps = g[0].abs().sum(-1).nonzero()
            if len(deps) == 0:
                continue
            last = int(deps[-1])
            best = max(best, last - o)
            cut |= last == T - 1 and o <= T // 2
    return best, cut


def frame_ms(extractor, sample_rate: int = 16000) -> float:
    """Milliseconds between two frames of a front end with ``output_lengths``
    (a :class:`~speechbrain_wsm.nnet.frontend.FrameCounter`); 20 ms when
    unknown."""
    counter = getattr(extractor, "output_lengths", None)
    strides = getattr(counter, "strides", None)
    if not strides:
        return 20.0
    hop = 1
    for s in strides:
        hop *= s
    return 1000.0 * hop / sample_rate


def context_network(hparams: dict):
    """The part of a loaded recipe that maps latent frames to encoder frames,
    with its input size and frame duration: ``(module, in_dim, ms)``.

    Reads ``wav2vec2`` (a pretraining recipe: its context network) or
    ``encoder`` (a bare encoder of ``d_model`` inputs).
    """
    model = hparams.get("wav2vec2")
    if model is not None:
        enc = model.encoder
        return (
            enc.context,
            enc.context.input_proj.in_features,
            frame_ms(enc.latent_extractor),
        )
    asr = hparams.get("asr_model")
    if asr is not None and hasattr(asr, "encoder"):  # a CTC recipe: its encoder
        enc = asr.encoder
        return enc, enc.d_model, float(getattr(asr, "frame_ms", 40.0))
    encoder = hparams.get("encoder")
    if encoder is not None:
        return encoder, encoder.d_model, 20.0
    raise ValueError(
        "found neither 'wav2vec2', 'asr_model' nor 'encoder' among the keys: "
        f"{', '.join(hparams)}"
    )


def _load(source: str, overrides: Sequence[str]):
    path = Path(source)
    saved = path / "hyperparams.yaml"
    if path.is_dir() and saved.is_file() and "\nasr_model:" in saved.read_text():
        # a CTC recipe's run: the look-ahead is the architecture's, weights aside
        path, source = saved, str(saved)
    if path.is_dir():
        from speechbrain_wsm.models.wav2vec2 import load_pretrained_model

        if overrides:
            raise ValueError("overrides apply to a YAML file, not an output folder")
        return {"wav2vec2": load_pretrained_model(path)}
    from speechbrain_wsm.recipe.experiment import load_hparams

    argv = [source, *overrides]
    text = path.read_text(encoding="utf-8")
    for key in ("data_folder",):  # placeholders the model does not need
        if f"{key}: !PLACEHOLDER" in text and not any(
            a.startswith(f"--{key}") for a in overrides
        ):
            argv.append(f"--{key}=unused")
    hparams = load_hparams(argv)[0]
    return hparams


def describe(
    source: str,
    overrides: Sequence[str] = (),
    frames: int = 64,
    max_frames: int = 1024,
) -> list[str]:
    """The look-ahead of a recipe's encoder (YAML or trained run folder), as lines:
    ``look-ahead: <F> frames (<M> ms)``, then the front end's window if known."""
    hparams = _load(source, overrides)
    net, in_dim, ms = context_network(hparams)
    net.eval().requires_grad_(False)

    def fn(x):
        return net(x)[0]

    net.double()
    try:  # float64 where every layer supports it, else the model's float32
        found = lookahead_frames(
            fn, in_dim, frames, max_frames=max_frames, dtype=torch.float64
        )
    except RuntimeError:
        net.float()
        found = lookahead_frames(fn, in_dim, frames, max_frames=max_frames)
    if found is None:
        lines = [f"look-ahead: unbounded (more than {max_frames // 2} frames)"]
    else:
        lines = [f"look-ahead: {found} frames ({found * ms:g} ms)"]
    front = _front_end_window(hparams)
    return lines + [front] if front else lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print ``look-ahead: <F> frames (<M> ms)``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.latency",
        description="Measure the look-ahead of a recipe's encoder.",
    )
    parser.add_argument("source", help="hparams YAML or trained output folder")
    parser.add_argument("--frames", type=int, default=64, help="first length tried")
    parser.add_argument("--max_frames", type=int, default=1024)
    args, overrides = parser.parse_known_args(argv)
    for line in describe(args.source, overrides, args.frames, args.max_frames):
        print(line)
    return 0


def _front_end_window(hparams) -> str | None:
    """A line on the front end's own window (not part of the count above)."""
    model = hparams.get("wav2vec2")
    counter = getattr(getattr(model, "encoder", None), "latent_extractor", None)
    if counter is None:  # a streaming CTC recipe's front end
        counter = getattr(hparams.get("asr_model"), "frontend", None)
    counter = getattr(counter, "output_lengths", None)
    if getattr(counter, "kernel_sizes", None) is None:
        return None
    from speechbrain_wsm.nnet.streaming_frontend import receptive_field

    span, hop = receptive_field(counter.kernel_sizes, counter.strides)
    return (
        f"front end: each encoder frame reads {span / 16:g} ms of audio "
        f"({span} samples), one frame every {hop / 16:g} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
