"""Measure an encoder's algorithmic look-ahead from its dependency structure.

::

    python -m speechbrain_wsm.latency hparams/wav2vec2_streaming_llsa.yaml [--key=value ...]
    python -m speechbrain_wsm.latency results/wav2vec2_streaming_llsa_l32_r8/1986

The first form builds the model of a recipe YAML with the same overrides as
``train.py`` (run it from the recipe folder); the second rebuilds a trained
output folder (its ``hyperparams.yaml`` and last checkpoint). Either way the
context network (input projection, positions, encoder) runs in eval mode on
random latent frames; input frame ``t`` is perturbed
(:func:`speechbrain.utils.streaming.infer_dependency_matrix`) and the earliest
output that changes, ``o``, gives a look-ahead of ``t - o`` frames; the maximum
over the probed frames is printed as::

    look-ahead: <F> frames (<M> ms)

It is measured, not read from the configuration: a positional convolution, a
non-causal convolution or an acausal mixer all show up. A look-ahead that
reaches the start of the longest probed sequence prints ``unbounded``.
The front end's own analysis window (e.g. 25 ms fbank windows and valid
convolutions) is not included: the count is in encoder frames.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from speechbrain.utils.streaming import infer_dependency_matrix

__all__ = ["lookahead_frames", "frame_ms", "context_network", "main"]


def lookahead_frames(
    fn: Callable[[torch.Tensor], torch.Tensor],
    feat_dim: int,
    frames: int = 64,
    probes: int = 16,
    max_frames: int = 1024,
) -> int | None:
    """Look-ahead of ``fn`` in frames, from perturbing its inputs.

    Arguments
    ---------
    fn : callable
        ``[1, frame, feat_dim] -> [1, frame, out]``, deterministic (eval mode).
    feat_dim : int
        Input feature size.
    frames : int
        First sequence length tried; doubled while the look-ahead found
        reaches back to output 0 (it may be cut by the sequence start).
    probes : int
        About how many input frames are perturbed per length.
    max_frames : int
        Longest sequence tried.

    Returns
    -------
    int or None
        ``max_t (t - earliest output changed by input t)``; None when it is
        still cut by the sequence start at ``max_frames`` (an acausal model).

    Example
    -------
    >>> conv = torch.nn.Conv1d(2, 2, 5, padding=2)  # 2 frames each side
    >>> lookahead_frames(lambda x: conv(x.transpose(1, 2)).transpose(1, 2), 2)
    2
    """
    T = frames
    while True:
        stride = max(1, T // probes)
        deps = infer_dependency_matrix(fn, (1, T, feat_dim), in_stride=stride)
        best, cut = 0, False
        for row, t in enumerate(range(0, T, stride)):
            changed = deps[row].nonzero()
            if len(changed) == 0:
                continue
            first = int(changed[0])
            best = max(best, t - first)
            cut |= first == 0 and t > 0 and t >= T // 2
        if not cut:
            return best
        if T >= max_frames:
            return None
        T *= 2


def frame_ms(extractor, sample_rate: int = 16000) -> float:
    """Milliseconds between two frames of a front end with ``output_lengths``
    (a :class:`~speechbrain_wsm.models.wav2vec2.FrameCounter`); 20 ms when
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
    encoder = hparams.get("encoder")
    if encoder is not None:
        return encoder, encoder.d_model, 20.0
    raise ValueError(
        f"found neither 'wav2vec2' nor 'encoder' among the keys: {', '.join(hparams)}"
    )


def _load(source: str, overrides: Sequence[str]):
    path = Path(source)
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
    net, in_dim, ms = context_network(_load(args.source, overrides))
    net.eval()

    def fn(x):
        return net(x)[0]

    with torch.no_grad():
        frames = lookahead_frames(fn, in_dim, args.frames, max_frames=args.max_frames)
    if frames is None:
        print(f"look-ahead: unbounded (more than {args.max_frames // 2} frames)")
    else:
        print(f"look-ahead: {frames} frames ({frames * ms:g} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
