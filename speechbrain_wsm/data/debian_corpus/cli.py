"""``python -m speechbrain_wsm.data.debian_corpus``: build the real-speech corpus."""

from __future__ import annotations

import argparse

from .._system import run_builder
from .build import build_debian_corpus
from .sources import ASTERISK_SOUNDS, ASTERISK_TRANSCRIPTS, LIBRIVOX_DIR

__all__ = ["main"]

DESCRIPTION = (
    "A small real-speech corpus built from Debian packages, in the LibriSpeech layout."
)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.data.debian_corpus",
        description=DESCRIPTION,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--finetune_minutes", type=float, default=10.0)
    parser.add_argument("--max_duration", type=float, default=35.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--asterisk_sounds", default=ASTERISK_SOUNDS)
    parser.add_argument("--asterisk_transcripts", default=ASTERISK_TRANSCRIPTS)
    parser.add_argument("--librivox", default=LIBRIVOX_DIR)
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    return run_builder(
        build_debian_corpus,
        ["root", "splits", "left_out"],
        out=args.out,
        finetune_minutes=args.finetune_minutes,
        max_duration=args.max_duration,
        seed=args.seed,
        workers=args.workers,
        asterisk_sounds=args.asterisk_sounds,
        asterisk_transcripts=args.asterisk_transcripts,
        librivox_dir=args.librivox,
        progress=not args.no_progress,
        redo=args.redo,
    )
