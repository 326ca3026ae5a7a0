"""Output units for CTC: characters or sentencepiece BPE, trained from a manifest.

Both tokenizers put the CTC blank at index 0, so a recipe's CTC loss and
greedy decoder use ``blank_index=0`` whatever the units:

- :class:`CharTokenizer`: ``<blank>``, ``<unk>``, ``<space>`` and the characters
  seen in the training transcripts, saved as a text file with one unit per
  line (line number = index);
- :class:`SentencePieceTokenizer`: a sentencepiece BPE (or unigram) model whose
  piece 0 is ``<blank>`` (sentencepiece's padding piece, never produced by
  encoding) and piece 1 ``<unk>``.

:func:`train_char_tokenizer` and :func:`train_bpe_tokenizer` read the ``wrd``
column of a training manifest and save the units beside it
(``<manifest stem>_char.txt``, ``<manifest stem>_bpe<size>.model``); a second
call loads the saved units instead of training again.  :func:`load_tokenizer`
loads either kind from its file. :func:`prepare_tokenizer` trains either kind
once at a recipe's fixed ``tokenizer_file`` and loads it afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError

from .manifests import atomic_write_text, read_manifest

__all__ = [
    "BLANK",
    "CharTokenizer",
    "PhoneTokenizer",
    "SentencePieceTokenizer",
    "load_tokenizer",
    "prepare_tokenizer",
    "train_bpe_tokenizer",
    "train_char_tokenizer",
]

logger = logging.getLogger(__name__)

BLANK = "<blank>"
UNK = "<unk>"
SPACE = "<space>"


def _manifest_texts(manifest: str, column: str) -> list[str]:
    if not os.path.isfile(manifest):
        raise UserFileNotFoundError(f"training manifest '{manifest}' not found")
    with open(manifest, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise UserValueError(
                f"manifest '{manifest}' has no column {column!r}; "
                f"columns: {reader.fieldnames}"
            )
        return [row[column] for row in reader if row[column].strip()]


class _CTCTokenizer:
    """What both tokenizers share: the blank at 0 and greedy CTC decoding."""

    blank_index = 0

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def vocab_size(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def decode_ctc(self, ids: Iterable[int]) -> str:
        """Greedy CTC decoding: merge repeated units, drop blanks, decode.

        Arguments
        ---------
        ids : iterable of int
            Frame-level best units (e.g. ``logits.argmax(-1)`` of one utterance,
            padding removed).

        Returns
        -------
        str
            The text.
        """
        merged, previous = [], None
        for i in ids:
            i = int(i)
            if i != previous and i != self.blank_index:
                merged.append(i)
            previous = i
        return self.decode(merged)


class CharTokenizer(_CTCTokenizer):
    """Character units; index 0 is the CTC blank.

    Arguments
    ---------
    units : sequence of str
        The units in index order; must start with ``<blank>``, ``<unk>``.
        ``<space>`` stands for the space character.

    Example
    -------
    >>> tok = CharTokenizer.from_texts(["HELLO WORLD", "IT'S"])
    >>> tok.units[:3]
    ['<blank>', '<unk>', '<space>']
    >>> tok.decode(tok.encode("HELLO IT'S"))
    "HELLO IT'S"
    >>> tok.encode("Z") == [tok.unk_index]
    True
    >>> e = tok.encode("LO")
    >>> tok.decode_ctc([0, e[0], e[0], 0, e[1], 0])
    'LO'
    """

    unk_index = 1

    def __init__(self, units: Sequence[str]):
        units = list(units)
        if units[:2] != [BLANK, UNK]:
            raise ValueError(
                f"character units must start with {BLANK!r}, {UNK!r}; got {units[:2]}"
            )
        if len(set(units)) != len(units):
            raise ValueError("character units contain duplicates")
        self.units = units
        self._index = {u: i for i, u in enumerate(units)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Units from the characters of ``texts``, sorted (space first).

        Arguments
        ---------
        texts : iterable of str
            Training transcripts.

        Returns
        -------
        CharTokenizer
            The tokenizer.
        """
        chars = Counter()
        for text in texts:
            chars.update(text)
        chars.pop(" ", None)
        return cls([BLANK, UNK, SPACE, *sorted(chars)])

    @property
    def vocab_size(self) -> int:
        """Number of units, blank included."""
        return len(self.units)

    def encode(self, text: str) -> list[int]:
        """Unit indices of ``text`` (unknown characters map to ``<unk>``)."""
        return [
            self._index.get(SPACE if c == " " else c, self.unk_index)
            for c in " ".join(text.split())
        ]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of unit indices; blanks are dropped, ``<unk>`` kept as is."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.blank_index:
                continue
            unit = self.units[i]
            out.append(" " if unit == SPACE else unit)
        return "".join(out)

    def save(self, path: str) -> None:
        """Write the units, one per line, atomically."""
        atomic_write_text(path, "".join(u + "\n" for u in self.units))

    @classmethod
    def load(cls, path: str) -> CharTokenizer:
        """Read units written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f if line.rstrip("\n")])


class PhoneTokenizer(CharTokenizer):
    """Space-separated units (phones); index 0 is the CTC blank.

    A transcript ``"DH AH K AE T"`` is five units; decoding joins units with
    spaces, so a word error rate over decoded text is a phone error rate.
    Saved like :class:`CharTokenizer` (one unit per line) under a ``.phones``
    file name, which :func:`load_tokenizer` recognises.

    Example
    -------
    >>> tok = PhoneTokenizer.from_texts(["DH AH K AE T", "AH"])
    >>> tok.units
    ['<blank>', '<unk>', 'AE', 'AH', 'DH', 'K', 'T']
    >>> tok.decode_ctc([0, 4, 4, 0, 3, 3, 5])
    'DH AH K'
    """

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> PhoneTokenizer:
        """Units from the space-separated tokens of ``texts``, sorted."""
        units = Counter()
        for text in texts:
            units.update(text.split())
        return cls([BLANK, UNK, *sorted(units)])

    def encode(self, text: str) -> list[int]:
        """Unit indices of the space-separated tokens of ``text``."""
        return [self._index.get(u, self.unk_index) for u in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        """Space-separated units; blanks dropped."""
        return " ".join(self.units[int(i)] for i in ids if int(i) != self.blank_index)


class SentencePieceTokenizer(_CTCTokenizer):
    """A sentencepiece model whose piece 0 is the CTC blank.

    Arguments
    ---------
    model_path : str
        A ``.model`` file trained by :func:`train_bpe_tokenizer` (or any
        sentencepiece model with ``pad_id=0``).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_wsm.data.manifests import write_manifest
    >>> d = tempfile.mkdtemp()
    >>> rows = [dict(ID=f"1-1-{i}", duration=1.0, wav="x", spk_id="1", wrd=w)
    ...         for i, w in enumerate(["THE CAT SAT ON THE MAT", "THE DOG SAT"] * 20)]
    >>> _ = write_manifest(os.path.join(d, "train.csv"), rows)
    >>> tok = train_bpe_tokenizer(os.path.join(d, "train.csv"), vocab_size=30)
    >>> tok.blank_index, tok.decode(tok.encode("THE CAT SAT"))
    (0, 'THE CAT SAT')
    >>> 0 in tok.encode("THE DOG SAT ON THE MAT")
    False
    """

    def __init__(self, model_path: str):
        import sentencepiece as spm

        self.model_path = model_path
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        if self.sp.pad_id() != 0:
            raise ValueError(
                f"sentencepiece model '{model_path}' has pad_id={self.sp.pad_id()}; "
                "the CTC blank must be piece 0 (train with pad_id=0)"
            )

    @property
    def vocab_size(self) -> int:
        """Number of pieces, blank included."""
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Piece indices of ``text``."""
        return self.sp.encode(text, out_type=int)

    def pieces(self, text: str) -> list[str]:
        """Pieces of ``text`` (for inspection)."""
        return self.sp.encode(text, out_type=str)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of piece indices; blanks are dropped."""
        return self.sp.decode([int(i) for i in ids if int(i) != self.blank_index])


def _beside(manifest: str, save_folder: str | None, suffix: str) -> str:
    folder = save_folder or os.path.dirname(os.path.abspath(manifest))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(manifest))[0]
    return os.path.join(folder, f"{stem}{suffix}")


def train_char_tokenizer(
    manifest: str,
    save_folder: str | None = None,
    column: str = "wrd",
    redo: bool = False,
) -> CharTokenizer:
    """Character units from a manifest, saved as ``<stem>_char.txt`` beside it.

    Arguments
    ---------
    manifest : str
        Training CSV manifest.
    save_folder : str, optional
        Where to save (default: the manifest's folder).
    column : str
        Transcript column.
    redo : bool
        Train again even if the file exists.

    Returns
    -------
    CharTokenizer
        The trained (or loaded) tokenizer.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_wsm.data.manifests import write_manifest
    >>> d = tempfile.mkdtemp()
    >>> row = dict(ID="1-1-1", duration=1.0, wav="x", spk_id="1", wrd="AB BA")
    >>> _ = write_manifest(os.path.join(d, "train.csv"), [row])
    >>> train_char_tokenizer(os.path.join(d, "train.csv")).units
    ['<blank>', '<unk>', '<space>', 'A', 'B']
    >>> os.path.isfile(os.path.join(d, "train_char.txt"))
    True
    """
    path = _beside(manifest, save_folder, "_char.txt")
    if os.path.isfile(path) and not redo:
        return CharTokenizer.load(path)
    tok = CharTokenizer.from_texts(_manifest_texts(manifest, column))
    tok.save(path)
    logger.info("character units (%d) saved to %s", tok.vocab_size, path)
    return tok


def train_bpe_tokenizer(
    manifest: str,
    vocab_size: int = 128,
    save_folder: str | None = None,
    column: str = "wrd",
    model_type: str = "bpe",
    redo: bool = False,
) -> SentencePieceTokenizer:
    """Train a sentencepiece model on a manifest's transcripts.

    Saved as ``<stem>_<model_type><vocab_size>.model`` (and ``.vocab``) beside
    the manifest.  Piece 0 is ``<blank>``, piece 1 ``<unk>``; no BOS/EOS.  On
    small text the vocabulary may come out smaller than ``vocab_size``.
    ``manifest``, ``save_folder``, ``column`` and ``redo`` are as for
    :func:`train_char_tokenizer`; returns the trained (or loaded) tokenizer.

    Arguments
    ---------
    vocab_size : int
        Requested number of pieces (blank and unk included).
    model_type : str
        ``"bpe"`` or ``"unigram"``.
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise UserValueError(
            f"model_type must be 'bpe' or 'unigram', got {model_type!r}"
        )
    path = _beside(manifest, save_folder, f"_{model_type}{vocab_size}.model")
    if os.path.isfile(path) and not redo:
        return SentencePieceTokenizer(path)
    texts = _manifest_texts(manifest, column)
    folder = os.path.dirname(path)
    prefix = tempfile.mkdtemp(prefix=".spm-", dir=folder)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_prefix=os.path.join(prefix, "m"),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=0,
            pad_piece=BLANK,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            hard_vocab_limit=False,
            normalization_rule_name="identity",
            num_threads=1,
            minloglevel=2,
        )
        os.replace(os.path.join(prefix, "m.vocab"), path[: -len(".model")] + ".vocab")
        os.replace(os.path.join(prefix, "m.model"), path)
    finally:
        for name in os.listdir(prefix):
            os.unlink(os.path.join(prefix, name))
        os.rmdir(prefix)
    tok = SentencePieceTokenizer(path)
    logger.info("%s units (%d) saved to %s", model_type, tok.vocab_size, path)
    return tok


def load_tokenizer(path: str) -> CharTokenizer | SentencePieceTokenizer:
    """Load units saved by :func:`train_char_tokenizer` or :func:`train_bpe_tokenizer`.

    Arguments
    ---------
    path : str
        A ``.txt`` character file or a sentencepiece ``.model``.

    Returns
    -------
    CharTokenizer or SentencePieceTokenizer
        The tokenizer.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "u.txt")
    >>> CharTokenizer(["<blank>", "<unk>", "<space>", "A"]).save(p)
    >>> load_tokenizer(p).vocab_size
    4
    """
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"tokenizer file '{path}' not found")
    if path.endswith(".model"):
        return SentencePieceTokenizer(path)
    if path.endswith(".phones"):
        return PhoneTokenizer.load(path)
    return CharTokenizer.load(path)


def prepare_tokenizer(
    train_csv: str,
    tokenizer_file: str,
    unit: str = "char",
    vocab_size: int = 100,
    max_units: int | None = None,
):
    """Train the CTC units on ``train_csv`` once; save them at ``tokenizer_file``.

    The units live at a fixed path (the recipe's ``tokenizer_file``) so that
    evaluation rebuilds exactly what training used; a later call loads them,
    unless the transcripts they were built from changed: a fingerprint of
    ``train_csv``'s transcripts is kept beside them (``<tokenizer_file>.source``),
    and units built from other transcripts (a manifest prepared again after
    the data was fixed) are built again, with a warning.

    Arguments
    ---------
    train_csv : str
        Training manifest (``wrd`` column).
    tokenizer_file : str
        ``.txt`` (characters) or ``.model`` (sentencepiece) destination.
    unit : str
        ``"char"``, ``"bpe"`` or ``"phone"`` (space-separated units, saved
        as a ``.phones`` file).
    vocab_size : int
        BPE vocabulary size (blank included).
    max_units : int, optional
        The size of the model's output layer: more units is an error.

    Returns
    -------
    CharTokenizer or SentencePieceTokenizer
    """
    if unit not in ("char", "bpe", "phone"):
        raise UserValueError(f"unit must be 'char', 'bpe' or 'phone', got {unit!r}")
    if unit == "phone" and not tokenizer_file.endswith(".phones"):
        raise UserValueError(
            "phone units are saved as a .phones file, got tokenizer_file "
            f"{tokenizer_file!r}"
        )
    source = tokenizer_file + ".source"
    stamp = None
    if os.path.isfile(train_csv):
        texts = sorted(r["wrd"] for r in read_manifest(train_csv))
        # the transcripts only: a later call may load without the build options
        stamp = f"{unit} " + hashlib.sha1("\n".join(texts).encode()).hexdigest()
    if os.path.isfile(tokenizer_file) and os.path.isfile(source) and stamp:
        with open(source, encoding="utf-8") as f:
            if f.read().strip() != stamp:
                logger.warning(
                    "%s was built from other transcripts than %s now holds: "
                    "building the units again",
                    tokenizer_file,
                    train_csv,
                )
                os.remove(tokenizer_file)
    if not os.path.isfile(tokenizer_file):
        folder = os.path.dirname(os.path.abspath(tokenizer_file))
        os.makedirs(folder, exist_ok=True)
        if unit in ("char", "phone"):
            if not os.path.isfile(train_csv):
                raise UserFileNotFoundError(
                    f"training manifest '{train_csv}' not found"
                )
            texts = [r["wrd"] for r in read_manifest(train_csv) if r["wrd"].strip()]
            kind = PhoneTokenizer if unit == "phone" else CharTokenizer
            kind.from_texts(texts).save(tokenizer_file)
        else:
            tok = train_bpe_tokenizer(
                train_csv, vocab_size=vocab_size, save_folder=folder, redo=True
            )
            if os.path.abspath(tok.model_path) != os.path.abspath(tokenizer_file):
                shutil.copyfile(tok.model_path, tokenizer_file)
        if stamp:
            with open(source, "w", encoding="utf-8") as f:
                f.write(stamp + "\n")
    elif stamp and not os.path.isfile(source):  # units from before fingerprints
        with open(source, "w", encoding="utf-8") as f:
            f.write(stamp + "\n")
    tok = load_tokenizer(tokenizer_file)
    if max_units is not None and len(tok) > max_units:
        raise UserValueError(
            f"{tokenizer_file} has {len(tok)} units but the model outputs "
            f"{max_units}: raise output_neurons to at least {len(tok)}"
        )
    return tok
