"""Transcribe your own audio with a trained CTC recipe: ``python -m speechbrain_wsm.transcribe``.

Usage::

    python -m speechbrain_wsm.transcribe RUN a.wav b.flac ... \\
        [--checkpoint best|latest|CKPT+...] [--device cpu] \\
        [--decoder greedy|beam|lexicon] [--beam_size 20] \\
        [--kenlm 3gram.arpa [--lexicon lexicon.txt] --lm_weight 0.5 --word_bonus 1.0] \\
        [--batch_size 8] [--KEY=VALUE ...]

``RUN`` is a recipe's output folder (or its ``hyperparams.yaml``), the same as
for ``python -m speechbrain_wsm.evaluate``, which documents the contract the
recipe follows; ``--KEY=VALUE`` overrides a top-level key of that YAML. Each
file (any format and sample rate soundfile reads; channels are averaged and
the audio is resampled to the recipe's ``sample_rate``, 16 kHz by default, by
:func:`speechbrain_wsm.data.audio.load_audio`, as in training) gives one line
on stdout, in the order given::

    <path>\\t<transcript>

Files are decoded in batches of similar length. Each file fails alone: one
that cannot be read, or that the model cannot take (a 0.05 s clip too short
for its front end, a batch that runs out of memory: its files are retried
one by one), is reported on stderr in one line (``error: <path>: <reason>``)
and the others are still transcribed; the exit status is 1 when any file
failed, with the list of those files. A file longer than ``--window_seconds``
(default: the recipe's ``max_duration``, else 30 s; 0: never) is decoded in
overlapping windows (``--overlap_seconds`` on each side, 2 s): each window's
frame posteriors are kept for its central part only, and the whole file is
decoded once from them, so a 10-minute file needs the memory of one window,
not of a full-attention pass over 30 000 frames.

From Python, following SpeechBrain's ``EncoderASR``::

    asr = Transcriber.from_run("results/wsm/1986", checkpoint="best")
    asr.transcribe_file("speech.flac")
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

import soundfile as sf
import torch

from speechbrain_wsm.errors import UserValueError, install_error_hook

__all__ = ["Transcriber", "main"]

logger = logging.getLogger(__name__)


class Transcriber:
    """A trained CTC model, its decoder and its audio reader, for any audio file.

    Arguments
    ---------
    asr_model : nn.Module
        ``asr_model(wavs, wav_lens) -> (log_probs, out_lens)`` (the evaluation
        contract of :mod:`speechbrain_wsm.evaluate`).
    decode : callable
        ``(log_probs, out_lens) -> list of texts``, from
        :func:`speechbrain_wsm.evaluate.build_decoder`.
    sample_rate : int
        Rate the model takes; files are resampled to it.
    device : str or torch.device
        Where ``asr_model`` runs.
    window_seconds : float, optional
        Files longer than this are decoded in overlapping windows
        (None or 0: always whole).
    overlap_seconds : float
        Context on each side of a window's kept part.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> from speechbrain_wsm.decoding import build_decoder
    >>> tok = CharTokenizer.from_texts(["A"])
    >>> class SaysA(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens):
    ...         lp = torch.full((len(wavs), 2, len(tok)), -9.0)
    ...         lp[:, 0, tok.encode("A")[0]] = 0.0
    ...         lp[:, 1, 0] = 0.0
    ...         return lp, wav_lens
    >>> asr = Transcriber(SaysA(), build_decoder(tok))
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(p, np.zeros((22050, 2), dtype="float32"), 22050)
    >>> asr.transcribe_file(p)
    'A'
    >>> asr.transcribe_batch(torch.zeros(2, 16000), torch.tensor([1.0, 0.5]))
    ['A', 'A']
    """

    def __init__(
        self,
        asr_model: torch.nn.Module,
        decode: Callable,
        sample_rate: int = 16000,
        device: str | torch.device = "cpu",
        window_seconds: float | None = None,
        overlap_seconds: float = 2.0,
    ):
        self.asr_model = asr_model.to(device).eval()
        self.decode = decode
        self.sample_rate = int(sample_rate)
        self.device = device
        if window_seconds and window_seconds <= 2 * overlap_seconds:
            raise UserValueError(
                f"window_seconds ({window_seconds}) must be longer than twice "
                f"overlap_seconds ({overlap_seconds})"
            )
        self.window_seconds = window_seconds or None
        self.overlap_seconds = float(overlap_seconds)

    @classmethod
    def from_run(
        cls,
        run_folder: str | os.PathLike,
        checkpoint: str = "best",
        device: str | torch.device = "cpu",
        overrides: dict | None = None,
        window_seconds: float | None = None,
        overlap_seconds: float = 2.0,
        **decoding,
    ) -> Transcriber:
        """Load a trained recipe as ``python -m speechbrain_wsm.evaluate`` does.

        Arguments
        ---------
        run_folder : str or PathLike
            The recipe's output folder (or its ``hyperparams.yaml``).
        checkpoint : str
            ``"best"``, ``"latest"`` or a ``CKPT+...`` folder, as for
            :func:`~speechbrain_wsm.recipe.checkpoints.recover_checkpoint`.
        device : str or torch.device
            Where the model runs.
        overrides : dict, optional
            Values replacing top-level keys of the YAML.
        window_seconds : float, optional
            Longer files are decoded in overlapping windows (default: the
            recipe's ``max_duration``, else 30 s; 0: never).
        overlap_seconds : float
            Context on each side of a window.
        **decoding
            Values replacing the recipe's decoding options (``decoder="beam"``,
            ``beam_size`` ...: :func:`~speechbrain_wsm.recipe.evaluation.decoding_options`).
        """
        from speechbrain_wsm.decoding import build_decoder, check_decoder_files
        from speechbrain_wsm.recipe.evaluation import (
            decoding_options,
            load_recipe,
            load_trained,
        )

        hparams, folder = load_recipe(str(run_folder), overrides)
        options = decoding_options(hparams, **decoding)
        check_decoder_files(
            options["decoder"], options["kenlm_model_path"], options["lexicon"]
        )
        model, tokenizer = load_trained(hparams, folder, checkpoint, device)
        decode = build_decoder(tokenizer, **options)
        if window_seconds is None:
            window_seconds = hparams.get("max_duration") or 30.0
            window_seconds = max(float(window_seconds), 4 * overlap_seconds)
        return cls(
            model,
            decode,
            hparams.get("sample_rate", 16000),
            device,
            window_seconds,
            overlap_seconds,
        )

    def load_audio(self, path: str | os.PathLike) -> torch.Tensor:
        """``path`` as the model's input: mono, at ``sample_rate``, ``[sample]``.

        Raises ``FileNotFoundError`` or ``ValueError`` naming ``path`` when it
        is missing, unreadable or empty.
        """
        from speechbrain_wsm.data.audio import load_audio

        return load_audio(path, sample_rate=self.sample_rate)

    @torch.no_grad()
    def transcribe_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> list[str]:
        """Transcribe a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, sample]`` at ``sample_rate``, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[batch]`` lengths relative to the longest (SpeechBrain's
            convention); None: no padding.

        Returns
        -------
        list of str
            One transcript per waveform.
        """
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be [batch, sample], got {tuple(wavs.shape)}")
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        log_probs, out_lens = self.asr_model(
            wavs.float().to(self.device), wav_lens.float().to(self.device)
        )
        return self.decode(log_probs.float().cpu(), out_lens.float().cpu())

    def _too_long(self, wav: torch.Tensor) -> bool:
        return bool(
            self.window_seconds and len(wav) > self.window_seconds * self.sample_rate
        )

    @torch.no_grad()
    def transcribe_long(self, wav: torch.Tensor) -> str:
        """Transcribe one long waveform ``[sample]`` in overlapping windows.

        Windows of ``window_seconds`` overlap by ``overlap_seconds`` on each
        side; each keeps the frames of its central part, and the
        concatenated frame posteriors are decoded once.
        """
        n = len(wav)
        size = int(self.window_seconds * self.sample_rate)
        overlap = int(self.overlap_seconds * self.sample_rate)
        step = size - 2 * overlap
        pieces = []
        for start in range(0, n, step):
            end = min(start + step, n)  # the part this window keeps
            first = max(0, min(start - overlap, n - size))
            last = min(n, first + size)
            log_probs, out_lens = self.asr_model(
                wav[first:last].float().unsqueeze(0).to(self.device),
                torch.ones(1, device=self.device),
            )
            frames = int(round(float(out_lens[0]) * log_probs.shape[1]))
            rate = frames / (last - first)
            a = int(round((start - first) * rate))
            b = frames if end == n else int(round((end - first) * rate))
            pieces.append(log_probs[0, a:b].float().cpu())
        log_probs = torch.cat(pieces).unsqueeze(0)
        return self.decode(log_probs, torch.ones(1))[0]

    def transcribe_file(self, path: str | os.PathLike) -> str:
        """The transcript of one audio file (any rate; resampled; long files in windows)."""
        wav = self.load_audio(path)
        if self._too_long(wav):
            return self.transcribe_long(wav)
        return self.transcribe_batch(wav.unsqueeze(0))[0]

    def transcribe_files(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 8
    ) -> list[str | Exception]:
        """Transcribe files in batches of similar length (longest first).

        Arguments
        ---------
        paths : sequence of str or PathLike
            Audio files.
        batch_size : int
            Files per batch.

        Returns
        -------
        list
            One entry per path, in order: its transcript, or the exception
            that stopped reading or decoding it (the other files are still
            transcribed). A batch that fails is retried file by file, so a
            file the model cannot take fails alone.
        """
        from speechbrain.utils.data_utils import batch_pad_right

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        results: list[str | Exception | None] = [None] * len(paths)
        lengths = {}
        for i, path in enumerate(paths):
            try:
                info = sf.info(os.fspath(path))
                lengths[i] = info.frames / info.samplerate
            except Exception:  # load_audio says what is wrong, or reads it
                try:
                    self.load_audio(path)
                    lengths[i] = 0.0  # readable after all: decode it anyway
                except (OSError, ValueError) as exc:
                    results[i] = exc
        order = sorted(lengths, key=lambda i: -lengths[i])
        for first in range(0, len(order), batch_size):
            batch, wavs = [], []
            for i in order[first : first + batch_size]:
                try:
                    wav = self.load_audio(paths[i])
                except (OSError, ValueError) as exc:
                    results[i] = exc
                    continue
                if self._too_long(wav):
                    results[i] = self._alone(self.transcribe_long, wav)
                else:
                    wavs.append(wav)
                    batch.append(i)
            if not batch:
                continue
            padded, wav_lens = batch_pad_right(wavs)
            try:
                texts = self.transcribe_batch(padded, wav_lens)
            except Exception as exc:  # noqa: BLE001 - this batch fails, not the others
                _free_memory()
                if len(batch) == 1:
                    texts = [FileFailure(_one_line(exc))]
                else:  # one by one: only the files the model cannot take fail
                    texts = [
                        self._alone(lambda w: self.transcribe_batch(w[None])[0], w)
                        for w in wavs
                    ]
            for i, text in zip(batch, texts, strict=True):
                results[i] = text
        return results

    def _alone(self, transcribe: Callable, wav: torch.Tensor) -> str | Exception:
        """``transcribe(wav)``, or the exception that stopped it (one line)."""
        try:
            return transcribe(wav)
        except Exception as exc:  # noqa: BLE001 - this file fails, not the others
            _free_memory()
            return FileFailure(_one_line(exc))


class FileFailure(Exception):
    """Why one file could not be transcribed (the model could not take it)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else ""
    if isinstance(exc, torch.OutOfMemoryError):
        reason = "out of memory (lower --window_seconds or use --device cpu)"
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _parse(argv: Sequence[str]):
    from speechbrain_wsm.evaluate import parse_override, recipe_parser

    parser = recipe_parser(
        "python -m speechbrain_wsm.transcribe",
        __doc__.split("\n\n", 1)[0],
        "Prints '<path>\\t<transcript>' per file; exit status 1 when a file failed.",
    )
    parser.add_argument("files", nargs="*", help="audio files (any rate)")
    parser.add_argument(
        "--window_seconds",
        type=float,
        help="decode longer files in overlapping windows of this length "
        "(default: the recipe's max_duration, else 30; 0: never)",
    )
    parser.add_argument(
        "--overlap_seconds",
        type=float,
        default=2.0,
        help="context on each side of a window (default 2)",
    )
    from speechbrain_wsm.streaming_asr import add_stream_options

    add_stream_options(parser)  # --stream: partial transcripts (streaming_asr.py)
    args, rest = parser.parse_known_args(list(argv))
    overrides = {}
    for item in rest:
        override = parse_override(item)
        if override is not None:
            overrides.update([override])
        elif not item.startswith("-"):
            args.files.append(item)  # a file given after an override
        else:
            parser.error(f"unrecognised argument {item!r} (overrides are --KEY=VALUE)")
    if not args.files:
        parser.error("give at least one audio file")
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 if a file failed)."""
    install_error_hook()  # a user's mistake (a missing LM or lexicon...): one line
    args, overrides = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.stream:
        from speechbrain_wsm.streaming_asr import main_stream

        return main_stream(args, overrides)
    from speechbrain_wsm.evaluate import decoding_args

    asr = Transcriber.from_run(
        args.run,
        checkpoint=args.checkpoint,
        device=args.device,
        overrides=overrides,
        **decoding_args(args),
        window_seconds=args.window_seconds,
        overlap_seconds=args.overlap_seconds,
    )
    results = asr.transcribe_files(args.files, args.batch_size)
    failed = []
    for path, result in zip(args.files, results, strict=True):
        if isinstance(result, Exception):
            failed.append(path)
            print(f"error: {path}: {result}", file=sys.stderr)
        else:
            print(f"{path}\t{result}", flush=True)
    if failed:
        print(
            f"{len(failed)} of {len(args.files)} file(s) failed: " + ", ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
