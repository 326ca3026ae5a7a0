"""Export a trained CTC recipe to ONNX: ``python -m speechbrain_wsm.export``.

Usage::

    python -m speechbrain_wsm.export RUN --onnx model.onnx [--check speech.wav]
    python -m speechbrain_wsm.export RUN --onnx step.onnx --streaming [--chunk_frames 8]

``RUN`` is a recipe's output folder (or its ``hyperparams.yaml``), as for
``python -m speechbrain_wsm.evaluate``. Without ``--streaming`` the offline
model is written: input ``wav`` ``[1, samples]`` (float, the recipe's rate,
any length), output ``log_probs`` ``[1, frames, units]``. With
``--streaming`` (a streaming recipe,
:class:`~speechbrain_wsm.models.streaming_ctc.StreamingFbankCTC`) the model
is one chunk step (:class:`~speechbrain_wsm.models.streaming_ctc.ChunkStep`)
of ``--chunk_frames`` encoder frames with every cache an explicit input and
output; the file's metadata holds what a runtime needs to drive it
(``chunk_samples``, ``buffer``, ``start_pos``, cache names and shapes), and
:class:`OnnxStreamer` drives it with onnxruntime. SummaryMixing and WSM
export with standard operators only (no custom op).

With ``--check FILE`` (default: a sample of ``tests/samples`` when present)
the exported model runs in onnxruntime on that audio, streamed chunk by chunk
for ``--streaming``, and the largest difference from PyTorch's offline
output is printed; the exit status is 1 when it exceeds ``--atol`` (1e-4).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechbrain_wsm.models.lengths import standardize

__all__ = [
    "OfflineGraph",
    "export_offline",
    "export_streaming",
    "ChunkRunner",
    "OnnxStreamer",
    "main",
    "torch_runner",
]

BIG = 2**62  # "end not known yet"


class OfflineGraph(nn.Module):
    """``wav [1, samples] -> log_probs [1, frames, units]`` of a CTC model,
    without the input checks and relative lengths (what ONNX traces)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from speechbrain_wsm.models.ctc_asr import FbankCTC
        from speechbrain_wsm.models.streaming_ctc import StreamingFbankCTC

        if not isinstance(model, FbankCTC | StreamingFbankCTC):
            raise ValueError(
                "ONNX export supports FbankCTC and StreamingFbankCTC models, got "
                f"{type(model).__name__}"
            )
        self.model = model.eval()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        m = self.model
        if hasattr(m, "frontend"):  # StreamingFbankCTC
            y = m.encoder(m.projection(m.frontend.latents(wav)))[0]
        else:  # FbankCTC
            # FbankCTC.features without padding: statistics over every frame
            with torch.autocast(wav.device.type, enabled=False):
                feats = standardize(m.fbank(wav.float()))
            # SpeechBrain's Conv2d adds a channel axis to a 3-D input and
            # "squeezes" it off a C-channel output (a no-op in PyTorch, an
            # invalid Squeeze in ONNX): give it the 4-D input it would make.
            convs = [c for c in m.subsampling.modules() if getattr(c, "unsqueeze", 0)]
            for c in convs:
                c.unsqueeze = False
            try:
                sub = m.subsampling(feats.unsqueeze(-1) if convs else feats)
            finally:
                for c in convs:
                    c.unsqueeze = True
            y = m.encode(m.projection(sub.flatten(2)))  # self-conditioned too
        return m.head(y).float().log_softmax(-1)


@contextmanager
def _exportable_scans():
    """WSM's window sums slice by Python arithmetic on the length and its CPU
    prefix sum works in blocks, which ``torch.export`` cannot follow
    symbolically; while exporting, one prefix sum and gathered differences
    (same values)."""
    from speechbrain_wsm.nnet import frame_sums
    from speechbrain_wsm.nnet.streaming import _range_sums

    saved = frame_sums.cumsum_frames, frame_sums.box_sums
    frame_sums.cumsum_frames = lambda u: u.cumsum(1)

    def box_sums(u, left, right):  # None: unbounded on that side
        T = u.shape[1]
        return _range_sums(
            u, -T if left is None else -left, T if right is None else right
        )

    frame_sums.box_sums = box_sums
    try:
        yield
    finally:
        frame_sums.cumsum_frames, frame_sums.box_sums = saved


def _export(module, args, path, input_names, output_names, dynamic_shapes=None):
    with _exportable_scans():
        _export_graph(module, args, path, input_names, output_names, dynamic_shapes)


def _export_graph(module, args, path, input_names, output_names, dynamic_shapes):
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
        opset_version=18,
        verbose=False,
    )


def _set_metadata(path, meta: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))


def export_offline(model: nn.Module, path, sample_rate: int = 16000) -> Path:
    """Write the offline model (any audio length) to ``path``."""
    from speechbrain_wsm.nnet.streaming import _BandAttentionBase

    encoder = getattr(model, "encoder", None)
    if any(
        isinstance(m, _BandAttentionBase) for m in getattr(encoder, "modules", list)()
    ):
        raise ValueError(
            "the offline ONNX export of band attention (maa, sa, LLSA) with a "
            "dynamic length is not supported yet: export the chunk step with "
            "--streaming"
        )
    graph = OfflineGraph(model)
    wav = torch.randn(1, 2 * sample_rate)
    dims = {"wav": {1: torch.export.Dim.DYNAMIC}}
    _export(graph, (wav,), path, ["wav"], ["out_log_probs"], dims)
    _set_metadata(path, {"sample_rate": sample_rate, "kind": "offline"})
    return Path(path)


def export_streaming(model: nn.Module, path, chunk_frames: int = 8) -> Path:
    """Write one chunk step of a streaming model, caches as inputs/outputs."""
    from speechbrain_wsm.models.streaming_ctc import ChunkStep, StreamingFbankCTC

    if not isinstance(model, StreamingFbankCTC):
        raise ValueError(
            f"--streaming needs a model with a streaming encoder "
            f"(StreamingFbankCTC, from a streaming recipe); {type(model).__name__} "
            "has none: export it without --streaming"
        )
    step = ChunkStep(model.eval(), chunk_frames).eval()
    caches = step.initial_caches()
    n = len(caches)
    args = (
        torch.zeros(1, step.chunk_samples),
        torch.zeros(1, step.buffer),
        torch.tensor(step.start_pos),
        torch.tensor(BIG),
        *caches,
    )
    inputs = ["wav", "wav_buffer", "pos", "end"] + [f"cache_{i}" for i in range(n)]
    outputs = ["out_log_probs", "out_first", "out_wav_buffer", "out_pos"]
    outputs += [f"out_cache_{i}" for i in range(n)]
    _export(step, args, path, inputs, outputs)
    _set_metadata(
        path,
        {
            "kind": "streaming",
            "sample_rate": model.sample_rate,
            "chunk_frames": chunk_frames,
            "chunk_samples": step.chunk_samples,
            "buffer": step.buffer,
            "start_pos": step.start_pos,
            "lookahead_ms": model.lookahead_ms,
            "frame_kernels": model.frontend.output_lengths.kernel_sizes,
            "frame_strides": model.frontend.output_lengths.strides,
            "cache_shapes": step.cache_shapes,
        },
    )
    return Path(path)


class ChunkRunner:
    """Drive a chunk step (PyTorch :class:`ChunkStep` or an ONNX session)
    over a stream of audio: buffering, positions, the final flush.

    Arguments
    ---------
    step : callable
        ``step(wav, wav_buffer, pos, end, caches) -> (log_probs, first,
        wav_buffer, pos, caches)`` on numpy or torch arrays.
    meta : dict
        ``chunk_samples``, ``buffer``, ``start_pos``, ``cache_shapes``,
        ``frame_kernels``, ``frame_strides``.
    zeros : callable
        ``shape -> zero array`` of the step's array type.
    scalar : callable
        ``int -> int64 scalar array``.
    """

    def __init__(self, step: Callable, meta: dict, zeros: Callable, scalar: Callable):
        self.step, self.meta, self.zeros, self.scalar = step, meta, zeros, scalar
        self.reset()

    def reset(self) -> None:
        m = self.meta
        self.caches = [self.zeros(tuple(s)) for s in m["cache_shapes"]]
        self.buffer = self.zeros((1, m["buffer"]))
        self.pos = self.scalar(m["start_pos"])
        self.pending, self.samples, self.frames = np.zeros(0, np.float32), 0, []
        self.done = False

    def _total_frames(self) -> int:
        n = self.samples
        for k, s in zip(
            self.meta["frame_kernels"], self.meta["frame_strides"], strict=True
        ):
            n = max(0, (n - k) // s + 1)
        return n

    def _run(self, chunk, end: int) -> tuple[int, list]:
        lp, first, self.buffer, self.pos, *self.caches = self.step(
            chunk, self.buffer, self.pos, self.scalar(end), *self.caches
        )
        first = int(first)
        out = [lp[0, j] for j in range(lp.shape[1]) if 0 <= first + j < end]
        self.frames.extend(out)
        return first + lp.shape[1], out

    def _array(self, values):
        """``values`` (numpy, at most one chunk) zero-padded to ``[1, chunk]``."""
        a = np.zeros((1, self.meta["chunk_samples"]), dtype=np.float32)
        a[0, : len(values)] = values
        return torch.from_numpy(a)

    def feed(self, samples) -> list:
        """Feed ``samples`` (1-D float array); the new frames' log-probabilities."""
        if self.done:
            raise ValueError("this stream was finished: call reset() to start another")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.pending = np.concatenate([self.pending, samples])
        self.samples += len(samples)
        out, S = [], self.meta["chunk_samples"]
        while len(self.pending) >= S:
            chunk, self.pending = self.pending[:S], self.pending[S:]
            out += self._run(self._array(chunk), BIG)[1]
        return out

    def finish(self) -> list:
        """Flush: the remaining frames' log-probabilities."""
        if self.done:
            raise ValueError("this stream was finished: call reset() to start another")
        T, out = self._total_frames(), []
        chunk, self.pending = self._array(self.pending), np.zeros(0, np.float32)
        while True:
            reached, got = self._run(chunk, T)
            out += got
            if reached >= T:
                break
            chunk = self._array(np.zeros(0, np.float32))
        self.done = True
        return out


def torch_runner(step_module) -> ChunkRunner:
    """The streaming loop of :class:`ChunkRunner` around the PyTorch chunk step
    (``models.streaming_ctc.ChunkStep``): what an ONNX streaming export is
    checked against."""
    meta = {
        "chunk_frames": step_module.chunk_frames,
        "chunk_samples": step_module.chunk_samples,
        "buffer": step_module.buffer,
        "start_pos": step_module.start_pos,
        "cache_shapes": step_module.cache_shapes,
        "frame_kernels": step_module.model.frontend.output_lengths.kernel_sizes,
        "frame_strides": step_module.model.frontend.output_lengths.strides,
    }

    @torch.no_grad()
    def step(*args):
        return step_module(*args)

    return ChunkRunner(
        step,
        meta,
        lambda s: torch.zeros(s),
        lambda v: torch.tensor(v, dtype=torch.long),
    )


class OnnxStreamer(ChunkRunner):
    """A streaming ONNX file (``export --streaming``) in onnxruntime.

    Example: ``frames = s.feed(samples); frames += s.finish()``, each frame a
    numpy ``[units]`` array of log-probabilities.
    """

    def __init__(self, path, threads: int = 1):
        import onnx
        import onnxruntime as ort

        proto = onnx.load(str(path), load_external_data=False)
        meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
        if meta.get("kind") != "streaming":
            raise ValueError(f"{path} is not a streaming export (export --streaming)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), opts, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in self.session.get_inputs()]

        def step(*args):
            return self.session.run(None, dict(zip(names, args, strict=True)))

        super().__init__(
            step,
            meta,
            lambda s: np.zeros(s, dtype=np.float32),
            lambda v: np.array(v, dtype=np.int64),
        )

    def _array(self, values):
        a = np.zeros((1, self.meta["chunk_samples"]), dtype=np.float32)
        a[0, : len(values)] = values
        return a


def _default_audio() -> Path | None:
    root = Path(__file__).resolve().parents[1] / "tests" / "samples"
    return next(iter(sorted(root.rglob("*.flac"))), None) if root.is_dir() else None


def check(model, path, audio, streaming: bool, threads: int = 1) -> float:
    """Largest |onnxruntime - PyTorch| of the log-probabilities on ``audio``."""
    with torch.no_grad():
        ref = OfflineGraph(model)(audio[None]).numpy()[0]
    if streaming:
        runner = OnnxStreamer(path, threads)
        frames = runner.feed(audio.numpy()) + runner.finish()
        got = np.stack(frames)
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"wav": audio[None].numpy()})[0][0]
    if got.shape != ref.shape:
        raise ValueError(f"onnxruntime gave {got.shape} frames, PyTorch {ref.shape}")
    return float(np.abs(got - ref).max())


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit status."""
    from speechbrain_wsm.recipe.evaluation import load_recipe, load_trained

    p = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run", help="recipe output folder or hyperparams YAML")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--streaming", action="store_true", help="export the chunk step")
    p.add_argument("--chunk_frames", type=int, default=8, help="frames per step")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--check", help="audio file to compare onnxruntime with PyTorch")
    p.add_argument(
        "--atol",
        type=float,
        help="largest difference accepted (default 1e-4; 2e-3 for FbankCTC, whose "
        "float32 SpeechBrain Fbank leaves the quietest bins' log energies to the "
        "FFT implementation)",
    )
    args = p.parse_args(argv)
    try:
        hparams, folder = load_recipe(args.run)
        model, _ = load_trained(hparams, folder, args.checkpoint, "cpu")
        model.eval()
        rate = hparams.get("sample_rate", 16000)
        if args.streaming:
            export_streaming(model, args.onnx, args.chunk_frames)
        else:
            export_offline(model, args.onnx, rate)
        print(f"wrote {args.onnx}")
        audio_path = args.check or _default_audio()
        if audio_path is None:
            return 0
        from speechbrain_wsm.data.audio import load_audio

        audio = load_audio(audio_path, sample_rate=rate)
        diff = check(model, args.onnx, audio, args.streaming)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"onnxruntime vs PyTorch on {audio_path}: max |diff| {diff:.2e}")
    atol = args.atol or (1e-4 if hasattr(model, "frontend") else 2e-3)
    if diff > atol:
        print(f"error: difference {diff:.2e} above --atol {atol}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
