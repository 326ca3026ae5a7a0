"""``python -m speechbrain_wsm.data.debian_corpus``: build the real-speech corpus."""

from __future__ import annotations

from .._system import builder_arguments, builder_parser, run_builder
from .build import build_debian_corpus
from .sources import ASTERISK_SOUNDS, ASTERISK_TRANSCRIPTS, LIBRIVOX_DIR

__all__ = ["main"]

DESCRIPTION = (
    "A small real-speech corpus built from Debian packages, in the LibriSpeech layout."
)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see ``--help``."""
    parser = builder_parser("python -m speechbrain_wsm.data.debian_corpus", DESCRIPTION)
    parser.add_argument("--finetune_minutes", type=float, default=10.0)
    parser.add_argument("--max_duration", type=float, default=35.0)
    parser.add_argument("--asterisk_sounds", default=ASTERISK_SOUNDS)
    parser.add_argument("--asterisk_transcripts", default=ASTERISK_TRANSCRIPTS)
    parser.add_argument("--librivox", default=LIBRIVOX_DIR)
    args = parser.parse_args(argv)
    return run_builder(
        build_debian_corpus,
        ["root", "splits", "left_out"],
        **builder_arguments(args),
        finetune_minutes=args.finetune_minutes,
        max_duration=args.max_duration,
        asterisk_sounds=args.asterisk_sounds,
        asterisk_transcripts=args.asterisk_transcripts,
        librivox_dir=args.librivox,
    )
