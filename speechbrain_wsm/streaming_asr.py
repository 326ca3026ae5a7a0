"""Partial transcripts as audio arrives: ``python -m speechbrain_wsm.transcribe --stream``.

Usage::

    python -m speechbrain_wsm.transcribe --stream RUN speech.wav [--no-realtime] [--chunk_ms 160] [--compiled]
    arecord -f S16_LE -r 16000 -c 1 -t raw | python -m speechbrain_wsm.transcribe --stream RUN -
    ... | python -m speechbrain_wsm.transcribe --stream RUN - --rate 8000

``RUN`` is the output folder of a streaming recipe (a model with a
``stream()`` method, e.g. ``recipes/LibriSpeech/ASR/CTC/hparams/
conformer_streaming_llsa.yaml``). A file is read whole (any format
soundfile reads, resampled to the model's rate) and fed in chunks of
``--chunk_ms`` at the pace it would arrive from a microphone, or as fast as
possible with ``--no-realtime``; ``-`` reads raw 16-bit little-endian mono
PCM from stdin at ``--rate`` Hz (resampled when it differs from the model's
rate) and always goes at the pace it arrives. After each chunk the growing
transcript is printed as::

    <path> [<seconds of audio> s]\\t<partial transcript>

(greedy CTC over the frames decoded so far), and at the end::

    <path>\\t<final transcript>

the recipe's decoder over every frame: the same text as the offline decoding
of the same model (``python -m speechbrain_wsm.transcribe RUN speech.wav``).
``--compiled`` runs the encoder's chunk step through ``torch.compile``,
compiled once before the first source (about a minute on one core): the
step that keeps up with real time on one CPU core.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import torch

__all__ = ["StreamingTranscriber", "pcm_chunks", "main_stream"]


class StreamingTranscriber:
    """One audio stream through a streaming CTC model, with partial transcripts.

    Arguments
    ---------
    asr_model : nn.Module
        In eval mode, with ``stream(chunk [1, sample], state, final) ->
        (log_probs [1, new frames, unit], state)`` (a
        :class:`~speechbrain_wsm.models.streaming_ctc.StreamingFbankCTC`).
    tokenizer
        The recipe's tokenizer (blank 0).
    decode : callable
        ``(log_probs, lens) -> texts``: the final decoder.
    sample_rate : int
        Rate the model takes.
    compiled : bool
        Run the encoder's chunk step through ``torch.compile`` (the model's
        ``stream(..., compiled=True)``: equal to the eager step within float
        rounding, and the step that is real time on one CPU core, see
        ``README_streaming.md``). Compiling takes about a minute for the
        recipe's encoder on one core, once per chunk size (less when
        Inductor's cache has it): call :meth:`warm_up` before real audio
        arrives.

    Example
    -------
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> from speechbrain_wsm.decoding import build_decoder
    >>> from speechbrain_wsm.models.streaming_ctc import StreamingFbankCTC
    >>> from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder
    >>> tok = CharTokenizer.from_texts(["AB"])
    >>> enc = StreamingEncoder(1, 16, nhead=2, d_ffn=32, kernel_size=3, left_context=4)
    >>> model = StreamingFbankCTC(enc, len(tok), n_mels=20, channels=(8, 8)).eval()
    >>> asr = StreamingTranscriber(model, tok, build_decoder(tok))
    >>> wav = torch.randn(16000)
    >>> partial = asr.feed(wav[:8000])
    >>> final = asr.finish(wav[8000:])
    >>> final == build_decoder(tok)(model(wav[None])[0])[0]
    True
    """

    def __init__(
        self,
        asr_model,
        tokenizer,
        decode: Callable,
        sample_rate=16000,
        compiled: bool = False,
    ):
        if not callable(getattr(asr_model, "stream", None)):
            raise ValueError(
                f"{type(asr_model).__name__} cannot stream (no stream() method): "
                "train a streaming recipe, e.g. hparams/conformer_streaming_llsa.yaml"
            )
        self.model = asr_model.eval()
        self.tokenizer, self.decode = tokenizer, decode
        self.sample_rate = int(sample_rate)
        self.units = len(tokenizer)
        self.compiled = bool(compiled)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.state, self.log_probs, self.ids = None, [], []
        self.last, self.samples, self.finished = 0, 0, False

    @property
    def seconds(self) -> float:
        """Audio fed so far."""
        return self.samples / self.sample_rate

    def _check(self, chunk) -> torch.Tensor:
        if self.finished:
            raise ValueError("this stream was finished: call reset() to start another")
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.as_tensor(chunk)
        if not chunk.is_floating_point():
            raise ValueError(
                f"audio chunk must be float samples in [-1, 1], got {chunk.dtype} "
                "(convert 16-bit PCM with pcm_chunks or x / 32768)"
            )
        if chunk.dim() == 2 and chunk.shape[0] == 1:
            chunk = chunk[0]
        if chunk.dim() != 1:
            raise ValueError(
                f"audio chunk must be mono [sample], got shape {tuple(chunk.shape)}"
            )
        return chunk.float()

    @torch.no_grad()
    def _push(self, chunk, final: bool) -> str:
        if chunk is not None:
            self.samples += chunk.shape[0]
            chunk = chunk[None]
        lp, self.state = self.model.stream(
            chunk, self.state, final=final, compiled=self.compiled
        )
        lp = lp.float().cpu()
        if lp.shape[1]:
            self.log_probs.append(lp)
            for u in lp[0, :, : self.units].argmax(-1).tolist():
                if u != self.last and u != 0:
                    self.ids.append(u)
                self.last = u
        return self.partial

    @property
    def partial(self) -> str:
        """Greedy CTC transcript of the frames decoded so far."""
        return " ".join(self.tokenizer.decode(self.ids).split())

    def warm_up(self, chunk_samples: int) -> None:
        """Stream silence in chunks of ``chunk_samples`` samples, then start a
        new stream: a compiled transcriber compiles its step for that chunk
        size here, not while real audio waits.

        The compiled step serves chunks of one frame count, so with
        ``compiled`` the chunks must be whole encoder frames (a multiple of
        the model's ``hop`` samples): ValueError otherwise.
        """
        hop = int(getattr(self.model, "hop", 1))
        chunk_samples = int(chunk_samples)
        if self.compiled and (chunk_samples <= 0 or chunk_samples % hop):
            frame_ms = 1000.0 * hop / self.sample_rate
            raise ValueError(
                f"--compiled streams whole encoder frames: the chunk must be a "
                f"multiple of {frame_ms:g} ms ({hop} samples), got "
                f"{1000.0 * chunk_samples / self.sample_rate:g} ms"
            )
        span = int(getattr(self.model, "span", hop))
        encoder = getattr(self.model, "encoder", None)
        self.reset()
        silence = torch.zeros(chunk_samples)
        # the first chunks fill the front end's window; two equal ones then
        # reach the compiled step
        for _ in range(-(-span // chunk_samples) + 3):
            self.feed(silence)
            entry = getattr(encoder, "_compiled_step", None)
            if self.compiled and entry is not None and entry[2] is not None:
                break
        self.reset()

    def feed(self, chunk) -> str:
        """Feed ``chunk`` (``[sample]`` float at ``sample_rate``); the partial text."""
        return self._push(self._check(chunk), final=False)

    def finish(self, chunk=None) -> str:
        """Feed the last ``chunk`` (optional), flush, and decode every frame
        with the recipe's decoder: the offline transcript."""
        chunk = None if chunk is None else self._check(chunk)
        if self.samples == 0 and (chunk is None or chunk.numel() == 0):
            raise ValueError("no audio was fed to this stream")
        self._push(chunk, final=True)
        self.finished = True
        if not self.log_probs:
            return ""
        return self.decode(torch.cat(self.log_probs, dim=1), torch.ones(1))[0]

    @classmethod
    def from_run(
        cls,
        run,
        checkpoint="best",
        device="cpu",
        overrides=None,
        compiled=False,
        **decoding,
    ):
        """Load a trained streaming recipe as :class:`~speechbrain_wsm.transcribe.Transcriber` does."""
        from speechbrain_wsm import decoding as dec
        from speechbrain_wsm.recipe.evaluation import (
            decoding_options,
            load_recipe,
            load_trained,
        )

        build_decoder = dec.build_decoder
        hparams, folder = load_recipe(str(run), overrides)
        options = decoding_options(hparams, **decoding)
        if hasattr(dec, "check_decoder_files"):  # a missing LM / lexicon: one line
            dec.check_decoder_files(
                options["decoder"],
                options.get("kenlm_model_path"),
                options.get("lexicon"),
            )
        model, tokenizer = load_trained(hparams, folder, checkpoint, device)
        return cls(
            model,
            tokenizer,
            build_decoder(tokenizer, **options),
            hparams.get("sample_rate", 16000),
            compiled=compiled,
        )


def pcm_chunks(stream, rate: int, chunk_samples: int) -> Iterator[torch.Tensor]:
    """Float chunks ``[sample]`` of raw s16le mono PCM read from a binary ``stream``."""
    need = 2 * chunk_samples
    rest = b""
    while True:
        data = stream.read(need - len(rest))
        if not data:
            break
        rest += data
        if len(rest) < need:
            continue
        yield torch.frombuffer(bytearray(rest), dtype=torch.int16).float() / 32768.0
        rest = b""
    if len(rest) % 2:
        raise ValueError(
            "stdin ended in the middle of a 16-bit sample: is it raw s16le PCM?"
        )
    if rest:
        yield torch.frombuffer(bytearray(rest), dtype=torch.int16).float() / 32768.0


def _resampler(rate: int, target: int):
    if rate == target:
        return lambda x: x
    import torchaudio

    return lambda x: torchaudio.functional.resample(x, rate, target)


def _chunk_samples(chunk_ms: float, rate: int) -> int:
    return max(1, round(chunk_ms * rate / 1000))


def stream_source(asr: StreamingTranscriber, source: str, args, out=None) -> str:
    """Transcribe one file (or ``-``: stdin PCM), printing partials; the final text."""
    out = out or sys.stdout
    rate = asr.sample_rate
    chunk_samples = _chunk_samples(args.chunk_ms, rate)
    if source == "-":
        if args.rate <= 0:
            raise ValueError(f"--rate must be a positive number of Hz, got {args.rate}")
        resample = _resampler(args.rate, rate)
        step = _chunk_samples(args.chunk_ms, args.rate)
        chunks = (resample(c) for c in pcm_chunks(sys.stdin.buffer, args.rate, step))
        realtime = False  # stdin already arrives at its own pace
    else:
        from speechbrain_wsm.data.audio import load_audio

        wav = load_audio(source, sample_rate=rate)
        chunks = (
            wav[i : i + chunk_samples] for i in range(0, wav.shape[0], chunk_samples)
        )
        realtime = args.realtime
    asr.reset()
    start = time.monotonic()
    for chunk in chunks:
        if realtime:  # wait until this chunk would have been fully recorded
            due = start + (asr.samples + chunk.shape[0]) / rate
            time.sleep(max(0.0, due - time.monotonic()))
        text = asr.feed(chunk)
        print(f"{source} [{asr.seconds:.2f} s]\t{text}", file=out, flush=True)
    final = asr.finish()
    print(f"{source}\t{final}", file=out, flush=True)
    return final


def main_stream(args, overrides: dict) -> int:
    """``transcribe --stream``: each source in turn; exit status 1 if one failed."""
    from speechbrain_wsm.evaluate import decoding_args

    asr = StreamingTranscriber.from_run(
        args.run,
        checkpoint=args.checkpoint,
        device=args.device,
        overrides=overrides,
        compiled=args.compiled,
        **decoding_args(args),
    )
    if args.compiled:
        print(
            "compiling the chunk step (about a minute on one core, once per "
            "chunk size)...",
            file=sys.stderr,
            flush=True,
        )
        try:
            asr.warm_up(_chunk_samples(args.chunk_ms, asr.sample_rate))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # Inductor's (no C++ compiler, ...)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(
                f"error: --compiled: torch.compile could not build the chunk "
                f"step ({type(exc).__name__}: {reason}); run without --compiled",
                file=sys.stderr,
            )
            return 1
        print("compiled: streaming now", file=sys.stderr, flush=True)
    failed = []
    for source in args.files:
        try:
            stream_source(asr, source, args)
        except (OSError, ValueError) as exc:
            failed.append(source)
            print(f"error: {source}: {exc}", file=sys.stderr)
    if failed:
        print(
            f"{len(failed)} of {len(args.files)} source(s) failed: "
            + ", ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0


def add_stream_options(parser) -> None:
    """The ``--stream`` options of ``python -m speechbrain_wsm.transcribe``."""
    group = parser.add_argument_group("streaming (partial transcripts)")
    group.add_argument(
        "--stream", action="store_true", help="feed each file in chunks, print partials"
    )
    group.add_argument(
        "--no-realtime",
        dest="realtime",
        action="store_false",
        help="feed files as fast as possible instead of at their real pace",
    )
    group.add_argument(
        "--rate", type=int, default=16000, help="sample rate of raw PCM on stdin ('-')"
    )
    group.add_argument("--chunk_ms", type=float, default=160.0, help="chunk duration")
    group.add_argument(
        "--compiled",
        action="store_true",
        help="run the encoder's chunk step through torch.compile (real time on "
        "one CPU core; compiled once at start, about a minute)",
    )
