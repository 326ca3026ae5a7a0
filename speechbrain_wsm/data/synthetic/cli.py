"""``python -m speechbrain_wsm.data.synthetic``: build the synthetic corpus."""

from __future__ import annotations

from .._system import builder_arguments, builder_parser, run_builder
from .build import build_synthetic_corpus

DESCRIPTION = (
    "A synthetic training corpus: public-domain text read by many synthetic voices."
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see ``--help``."""
    parser = builder_parser("python -m speechbrain_wsm.data.synthetic", DESCRIPTION)
    parser.add_argument("--hours", type=float, default=1.0, help="train-synth hours")
    parser.add_argument("--dev_minutes", type=float, default=5.0)
    parser.add_argument("--test_minutes", type=float, default=5.0)
    parser.add_argument("--fold_minutes", type=float, default=None)
    parser.add_argument(
        "--engines",
        default="flite,espeak-ng",
        help="comma list: flite,espeak-ng,hibari",
    )
    parser.add_argument("--train_speakers", type=int, default=40)
    parser.add_argument("--eval_speakers", type=int, default=8)
    parser.add_argument("--text", default=None, help="text file, one sentence a line")
    args = parser.parse_args(argv)
    return run_builder(
        build_synthetic_corpus,
        ["root", "finetuning_root", "splits", "folds_minutes", "wall_seconds"],
        **builder_arguments(args),
        hours=args.hours,
        dev_minutes=args.dev_minutes,
        test_minutes=args.test_minutes,
        fold_minutes=args.fold_minutes,
        engines=[e.strip() for e in args.engines.split(",") if e.strip()],
        train_speakers=args.train_speakers,
        eval_speakers=args.eval_speakers,
        text_file=args.text,
    )
