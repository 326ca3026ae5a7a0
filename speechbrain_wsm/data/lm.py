"""Word n-gram language models and lexicons for CTC decoding.

:func:`build_word_lm` turns text into what ``--decoder lexicon`` (and
``--decoder beam --kenlm``) read:

* the text is normalised the project's way (:func:`~speechbrain_wsm.data.text.normalize_text`:
  upper case ``A``-``Z`` and the apostrophe), one sentence per line;
* every line that contains a sentence of the given evaluation manifests
  (their ``wrd`` column), as a whole word sequence, is dropped, so the LM has
  seen no dev or test sentence; the kept text is written to ``lm_text.txt``
  for anyone to check;
* KenLM's ``lmplz`` estimates a modified Kneser-Ney ``order``-gram model from
  it and writes it as ARPA (``lm_<order>gram.arpa``; with ``binary=True``
  also KenLM's binary ``.bin``, via ``build_binary``, which loads faster);
* ``lexicon.txt`` lists every word of the LM with its spelling in output
  units, one word a line, in the format of flashlight's lexicon decoder
  (``WORD<TAB>W O R D``): characters by default, or the units of a given
  tokenizer. The lexicon decoder spells the words with the model's own
  tokenizer when it loads them, so a character lexicon serves a BPE model too.

``lmplz`` and ``build_binary`` come from the source tree of the ``kenlm``
package on PyPI: ``bash scripts/build_kenlm.sh`` (``make kenlm``; ``make
test`` runs it) compiles them into ``.venv/bin`` in two to five minutes, with
Debian's boost packages (``scripts/install_system_deps.sh``). They are
looked up in ``$KENLM_BIN``, beside the Python interpreter, then on ``PATH``.

:func:`kjv_sentences` gives the public-domain King James Bible text the
synthetic corpus reads (Debian's ``bible-kjv``), minus the dev and test
chapters of a corpus seed and minus any sentence of given manifests;
:func:`build_kjv_lm` builds the LM and lexicon from it in one call.

Command line::

    python -m speechbrain_wsm.data.lm OUT_DIR [TEXT ...] [--kjv [--seed 0]] \\
        [--exclude dev.csv test.csv] [--order 3] [--tokenizer units.txt] [--binary]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .manifests import atomic_write_text
from .text import normalize_text

__all__ = [
    "KenLMNotFoundError",
    "build_kjv_lm",
    "build_word_lm",
    "excluded_sentences",
    "find_kenlm_program",
    "kjv_sentences",
    "main",
    "read_lexicon_words",
    "remove_sentences",
    "spell",
    "write_lexicon",
]

logger = logging.getLogger(__name__)

#: The largest n-gram order KenLM's queries are compiled for (its default).
MAX_ORDER = 6


class KenLMNotFoundError(RuntimeError):
    """KenLM's ``lmplz`` or ``build_binary`` is not built on this machine."""

    def __init__(self, name: str):
        super().__init__(
            f"KenLM's '{name}' not found (in $KENLM_BIN, beside {sys.executable}, "
            "or on PATH); build it with `bash scripts/build_kenlm.sh` (or "
            "`make kenlm`), which compiles it from the kenlm source package "
            "with Debian's boost packages"
        )
        self.program = name


def find_kenlm_program(name: str = "lmplz") -> str:
    """Path of a KenLM program (``lmplz``, ``build_binary``).

    Looked up in ``$KENLM_BIN``, then in the folder of the running Python
    (a virtual environment's ``bin``, where ``scripts/build_kenlm.sh`` puts
    it), then on ``PATH``. Raises :class:`KenLMNotFoundError` when absent.
    """
    folders = [os.environ.get("KENLM_BIN"), os.path.dirname(sys.executable)]
    for folder in filter(None, folders):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    path = shutil.which(name)
    if path is None:
        raise KenLMNotFoundError(name)
    return path


def _manifest_sentences(path: str | os.PathLike) -> list[str]:
    import csv

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest '{path}' not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if "wrd" not in (reader.fieldnames or []):
            raise ValueError(
                f"manifest '{path}' has no 'wrd' column; columns: {reader.fieldnames}"
            )
        return [normalize_text(row["wrd"] or "") for row in reader]


def excluded_sentences(manifests: Iterable[str | os.PathLike]) -> set[str]:
    """The normalised ``wrd`` sentences of manifests (the ones an LM must not see).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_wsm.data.manifests import write_manifest
    >>> p = os.path.join(tempfile.mkdtemp(), "dev.csv")
    >>> _ = write_manifest(p, [dict(ID="a", duration=1, wav="x", spk_id="1",
    ...                             wrd="Let there be light")])
    >>> excluded_sentences([p])
    {'LET THERE BE LIGHT'}
    """
    out = set()
    for manifest in manifests:
        out.update(s for s in _manifest_sentences(manifest) if s)
    return out


def _holds_any(words: list[str], index: dict) -> bool:
    """Whether ``words`` contains one of the indexed word sequences."""
    for i in range(len(words)):
        for k in (1, 2, 3):
            for seq in index.get(tuple(words[i : i + k]), ()):
                if tuple(words[i : i + len(seq)]) == seq:
                    return True
    return False


def remove_sentences(
    lines: Iterable[str], excluded: Iterable[str]
) -> tuple[list[str], int]:
    """Drop every line that contains an excluded sentence as a word sequence.

    Lines and sentences are normalised text (words separated by single
    spaces); a line is dropped when one of the sentences occurs in it at word
    boundaries (the line itself, or a longer line holding it).

    Returns
    -------
    kept : list of str
        The lines that contain no excluded sentence, in order.
    dropped : int
        How many lines were dropped.

    Example
    -------
    >>> remove_sentences(["AND GOD SAW THE LIGHT", "GOD SAW", "THE LIGHT WAS GOOD"],
    ...                  ["GOD SAW THE LIGHT"])
    (['GOD SAW', 'THE LIGHT WAS GOOD'], 1)
    """
    # Index the excluded word sequences by their first (up to) three words,
    # so each position of a line costs three dictionary look-ups.
    index: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for sentence in excluded:
        words = tuple(sentence.split())
        if words:
            index.setdefault(words[:3], []).append(words)
    kept, dropped = [], 0
    for line in lines:
        if _holds_any(line.split(), index):
            dropped += 1
        else:
            kept.append(line)
    return kept, dropped


def _read_sources(sources) -> list[str]:
    """Normalised, non-empty lines of ``sources`` (see :func:`build_word_lm`)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [Path(sources)]
    lines = []
    for item in sources:
        if isinstance(item, os.PathLike):
            path = os.fspath(item)
            if path == "-":
                raw = sys.stdin.read().splitlines()
            elif not os.path.isfile(path):
                raise FileNotFoundError(f"text file '{path}' not found")
            else:
                try:
                    with open(path, encoding="utf-8") as f:
                        raw = f.read().splitlines()
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"text file '{path}' is not UTF-8 text ({e.reason} at "
                        f"byte {e.start})"
                    ) from None
        elif isinstance(item, str):
            raw = [item]
        else:
            raise TypeError(
                "text sources are sentences (str) or files (pathlib.Path); got "
                f"{type(item).__name__}"
            )
        lines.extend(t for t in (normalize_text(r) for r in raw) if t)
    return lines


def spell(word: str, tokenizer=None) -> list[str] | None:
    """``word`` in output units: characters, or ``tokenizer``'s units.

    Returns None when the tokenizer cannot spell the word (a unit would be
    ``<unk>``).

    Example
    -------
    >>> spell("IT'S")
    ['I', 'T', "'", 'S']
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> spell("AB", CharTokenizer.from_texts(["AB"])), spell("AC", CharTokenizer.from_texts(["AB"]))
    (['A', 'B'], None)
    """
    if tokenizer is None:
        return list(word)
    ids = tokenizer.encode(word)
    unk = getattr(tokenizer, "unk_index", None)
    if unk is None and hasattr(tokenizer, "sp"):
        unk = tokenizer.sp.unk_id()
    if not ids or unk in ids:
        return None
    if hasattr(tokenizer, "units"):
        return [tokenizer.units[i] for i in ids]
    return [tokenizer.sp.id_to_piece(i) for i in ids]


def write_lexicon(
    words: Iterable[str], path: str | os.PathLike, tokenizer=None
) -> tuple[int, int]:
    """Write ``WORD<TAB>U N I T S`` lines (flashlight's lexicon format), sorted.

    Words the tokenizer cannot spell are left out. Returns ``(written,
    left_out)``.
    """
    lines, left_out = [], 0
    for word in sorted(set(words)):
        units = spell(word, tokenizer)
        if units is None:
            left_out += 1
            continue
        lines.append(f"{word}\t{' '.join(units)}\n")
    atomic_write_text(os.fspath(path), "".join(lines))
    return len(lines), left_out


def read_lexicon_words(path: str | os.PathLike) -> list[str]:
    """The words (first column) of a lexicon file, in file order, each once.

    Raises ``FileNotFoundError`` or ``ValueError`` (an empty lexicon) naming
    the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"lexicon '{path}' not found")
    words, seen = [], set()
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] not in seen:
                    seen.add(fields[0])
                    words.append(fields[0])
    except UnicodeDecodeError:
        raise ValueError(f"lexicon '{path}' is not UTF-8 text") from None
    if not words:
        raise ValueError(f"lexicon '{path}' lists no word")
    return words


def _run(cmd: list[str], what: str, **kwargs) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {tail}")


def _tokenizer_key(tokenizer) -> str:
    if tokenizer is None:
        return "characters"
    if hasattr(tokenizer, "units"):
        return "units:" + "|".join(tokenizer.units)
    return "sentencepiece:" + os.path.abspath(getattr(tokenizer, "model_path", "?"))


def build_word_lm(
    sources: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    order: int = 3,
    exclude_manifests: Sequence[str | os.PathLike] = (),
    tokenizer=None,
    binary: bool = False,
    memory: str = "1G",
    redo: bool = False,
) -> tuple[str, str]:
    """Build a word n-gram LM (ARPA) and its lexicon from text.

    Arguments
    ---------
    sources : iterable of str or pathlib.Path, or a path
        Sentences (``str`` items, one sentence each) and text files
        (``pathlib.Path`` items, one sentence a line; ``-`` is stdin); a
        single ``str`` or path is one text file. Normalised with
        :func:`~speechbrain_wsm.data.text.normalize_text`.
    out_dir : str or PathLike
        Where ``lm_text.txt``, ``lm_<order>gram.arpa`` (and ``.bin``),
        ``lexicon.txt`` and ``lm.json`` (what was built, from what) go.
    order : int
        N-gram order, 1 to 6.
    exclude_manifests : sequence of paths
        Manifests (dev, test ...) whose ``wrd`` sentences the LM must not
        contain: every text line holding one is dropped.
    tokenizer : CharTokenizer or SentencePieceTokenizer, optional
        Spell the lexicon in its units (default: characters).
    binary : bool
        Also convert the ARPA to KenLM's binary format and return that path.
    memory : str
        ``lmplz``'s memory budget (``-S``): ``1G``, ``20%`` ...
    redo : bool
        Build again even when ``out_dir`` holds an LM of the same text and
        options (it is reused otherwise).

    Returns
    -------
    lm_path : str
        The ARPA file (the ``.bin`` with ``binary=True``).
    lexicon_path : str
        The lexicon.

    Raises
    ------
    ValueError
        Bad order, a manifest without ``wrd``, or no sentence left.
    FileNotFoundError
        A missing text file or manifest.
    KenLMNotFoundError
        ``lmplz`` (or ``build_binary``) is not built.
    """
    if not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ValueError(
            f"order must be an integer from 1 to {MAX_ORDER}, got {order!r}"
        )
    out = Path(out_dir)
    lines = _read_sources(sources)
    excluded = excluded_sentences(exclude_manifests)
    kept, dropped = remove_sentences(lines, excluded)
    if not kept:
        raise ValueError(
            f"no sentence to build the LM from ({len(lines)} read, {dropped} "
            "dropped as evaluation sentences)"
        )
    text = "".join(line + "\n" for line in kept)
    arpa = out / f"lm_{order}gram.arpa"
    lm_path = arpa.with_suffix(".bin") if binary else arpa
    lexicon = out / "lexicon.txt"
    record = {
        "order": order,
        "text_sha1": hashlib.sha1(text.encode()).hexdigest(),
        "units": _tokenizer_key(tokenizer),
        "binary": binary,
    }
    stamp = out / "lm.json"
    if not redo and stamp.is_file() and lm_path.is_file() and lexicon.is_file():
        try:
            old = json.loads(stamp.read_text())
        except ValueError:
            old = {}
        if all(old.get(k) == v for k, v in record.items()):
            logger.info("word LM in %s is up to date", out)
            return str(lm_path), str(lexicon)
    lmplz = find_kenlm_program("lmplz")
    build_binary = find_kenlm_program("build_binary") if binary else None
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    text_file = out / "lm_text.txt"
    atomic_write_text(str(text_file), text)
    with tempfile.TemporaryDirectory(dir=out, prefix=".lmplz-") as tmp:
        part = Path(tmp) / arpa.name
        # --discount_fallback: small texts lack the counts-of-counts that
        # modified Kneser-Ney discounts are estimated from; KenLM then uses
        # fixed discounts instead of failing.
        _run(
            [
                lmplz,
                "-o",
                str(order),
                "--text",
                str(text_file),
                "--arpa",
                str(part),
                "-S",
                memory,
                "-T",
                tmp,
                "--discount_fallback",
            ],
            "lmplz",
        )
        os.replace(part, arpa)
        if build_binary:
            part = Path(tmp) / lm_path.name
            _run([build_binary, str(arpa), str(part)], "build_binary")
            os.replace(part, lm_path)
    vocab = {w for line in kept for w in line.split()}
    written, left_out = write_lexicon(vocab, lexicon, tokenizer)
    record.update(
        sentences=len(kept),
        dropped_evaluation_sentences=dropped,
        excluded_from=[os.fspath(m) for m in exclude_manifests],
        words=len(vocab),
        lexicon_words=written,
        lexicon_unspellable=left_out,
        seconds=round(time.perf_counter() - start, 2),
    )
    atomic_write_text(str(stamp), json.dumps(record, indent=2) + "\n")
    logger.info(
        "word %d-gram LM from %d sentences (%d dropped as dev/test), %d words, "
        "%d in the lexicon (%d not spellable), in %.1f s: %s, %s",
        order, len(kept), dropped, len(vocab), written, left_out,
        record["seconds"], lm_path, lexicon,
    )  # fmt: skip
    return str(lm_path), str(lexicon)


def kjv_sentences(
    exclude_manifests: Sequence[str | os.PathLike] = (), seed: int | None = None
) -> list[str]:
    """King James Bible verses (Debian's ``bible-kjv``), normalised, for an LM.

    The text the synthetic corpus reads
    (:func:`~speechbrain_wsm.data.synthetic.texts.read_bible_verses`), every
    verse of any length, minus:

    * with ``seed``, the whole chapters that
      :func:`~speechbrain_wsm.data.synthetic.texts.split_sentences` gives to
      dev and test for the corpus of that seed (``build_synthetic_corpus``'s
      ``seed``, 0 by default), and every verse elsewhere that holds one of
      their sentences (the Bible repeats some verses word for word);
    * every verse holding a sentence of ``exclude_manifests`` (their ``wrd``).

    Raises :class:`~speechbrain_wsm.data._system.MissingPackageError` when
    ``bible-kjv`` is not installed.
    """
    from .synthetic.texts import read_bible_verses, split_sentences

    excluded = excluded_sentences(exclude_manifests)
    verses = read_bible_verses(min_words=1, max_words=10**6)
    if seed is not None:
        # the verses the corpus builder reads (read_bible_verses' default
        # lengths), split as it splits them
        limits = inspect.signature(read_bible_verses).parameters
        lo, hi = limits["min_words"].default, limits["max_words"].default
        pools = split_sentences(
            [v for v in verses if lo <= len(v.words.split()) <= hi], seed
        )
        held_out = [s for split in ("dev", "test") for s in pools[split]]
        chapters = {s.chapter for s in held_out}
        verses = [v for v in verses if v.chapter not in chapters]
        excluded |= {s.words for s in held_out}  # their copies elsewhere too
    kept, dropped = remove_sentences([v.words for v in verses], excluded)
    logger.info(
        "%d King James verses for the LM (%d more dropped as dev/test sentences)",
        len(kept),
        dropped,
    )
    return kept


def build_kjv_lm(
    out_dir: str | os.PathLike,
    exclude_manifests: Sequence[str | os.PathLike] = (),
    seed: int | None = None,
    order: int = 3,
    tokenizer=None,
    **options,
) -> tuple[str, str]:
    """:func:`build_word_lm` on :func:`kjv_sentences`: ``(lm_path, lexicon_path)``.

    The manifests are passed on, so ``lm.json`` records them and any of
    their sentences is dropped; ``options`` are :func:`build_word_lm`'s
    (``binary``, ``memory``, ``redo``).
    """
    return build_word_lm(
        kjv_sentences(exclude_manifests, seed),
        out_dir,
        order=order,
        exclude_manifests=exclude_manifests,
        tokenizer=tokenizer,
        **options,
    )


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.data.lm",
        description="Build a word n-gram LM (KenLM ARPA) and a lexicon from text, "
        "leaving out the sentences of evaluation manifests.",
    )
    parser.add_argument("out_dir", help="where the LM, lexicon and lm_text.txt go")
    parser.add_argument(
        "texts", nargs="*", help="text files, one sentence a line ('-': stdin)"
    )
    parser.add_argument(
        "--kjv",
        action="store_true",
        help="add the King James Bible (Debian bible-kjv) to the text",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="with --kjv: leave out the dev/test chapters of the synthetic "
        "corpus built with this seed",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="MANIFEST",
        help="manifests whose wrd sentences the LM must not contain",
    )
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument(
        "--tokenizer", help="spell the lexicon in these units (.txt or .model)"
    )
    parser.add_argument(
        "--binary", action="store_true", help="also write KenLM's binary .bin"
    )
    parser.add_argument("--memory", default="1G", help="lmplz -S (default 1G)")
    parser.add_argument("--redo", action="store_true")
    args = parser.parse_args(list(argv))
    if not args.texts and not args.kjv:
        parser.error("give text files, or --kjv")
    if args.seed is not None and not args.kjv:
        parser.error("--seed selects King James chapters: use it with --kjv")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the LM and lexicon paths."""
    from ._system import MissingPackageError

    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        tokenizer = None
        if args.tokenizer:
            from .tokenizers import load_tokenizer

            tokenizer = load_tokenizer(args.tokenizer)
        sources: list = [Path(t) for t in args.texts]
        if args.kjv:
            sources += kjv_sentences(args.exclude, args.seed)
        lm, lexicon = build_word_lm(
            sources,
            args.out_dir,
            order=args.order,
            exclude_manifests=args.exclude,
            tokenizer=tokenizer,
            binary=args.binary,
            memory=args.memory,
            redo=args.redo,
        )
    except (OSError, ValueError, RuntimeError, MissingPackageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"lm: {lm}\nlexicon: {lexicon}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
