"""What the MP3S preparations share: bad-input bookkeeping, manifests, text.

Every preparation follows the rules of :mod:`speechbrain_wsm.data.librispeech`:
bad input (unreadable or missing audio, empty transcripts, malformed lines,
duplicate IDs ...) is skipped, counted by kind, listed in a report file beside
the manifests and summarised in one log line; a missing folder is an error
naming the path and the expected layout; a finished manifest is kept on later
calls unless its options changed or ``redo=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from speechbrain_wsm.data._io import atomic_write_text, write_manifest
from speechbrain_wsm.data.librispeech import AudioError, probe_audio

__all__ = [
    "Prepared",
    "hash_fraction",
    "normalize_words",
    "prepare_tokenizer",
]

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Rows of one or more manifests, and the input that was skipped."""

    rows: list[dict] = field(default_factory=list)
    #: ``(kind, ID, path, detail)`` per skipped item.
    skipped: list[tuple[str, str, str, str]] = field(default_factory=list)

    def skip(self, kind: str, uid: str, path: str, detail: str) -> None:
        """Record one skipped item."""
        self.skipped.append((kind, str(uid), str(path), detail))

    def counts(self) -> Counter:
        """Skipped items per kind."""
        return Counter(kind for kind, *_ in self.skipped)

    def hours(self) -> float:
        """Total duration of the rows, in hours."""
        return sum(float(r["duration"]) for r in self.rows) / 3600.0


def require_folder(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and the expected layout."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} '{path}' not found: expected {expected}")


def require_file(path: str, what: str, expected: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` and what it should be."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' not found: expected {expected}")


def is_finished(save_folder: str, names: Sequence[str], options: dict) -> bool:
    """True when every ``<name>.csv`` exists and was made with ``options``."""
    for name in names:
        csv_path = os.path.join(save_folder, f"{name}.csv")
        meta_path = os.path.join(save_folder, f"{name}.json")
        if not (os.path.isfile(csv_path) and os.path.isfile(meta_path)):
            return False
        try:
            with open(meta_path, encoding="utf-8") as f:
                previous = json.load(f).get("options")
        except (OSError, ValueError):
            return False
        if previous != json.loads(json.dumps(options)):
            logger.warning(
                "%s was prepared with other options (%s); preparing it again",
                csv_path,
                previous,
            )
            return False
    return True


def write_report(path: str, title: str, skipped, kinds: Sequence[str]) -> None:
    """The skipped-input report: counts per kind, then one line per item."""
    counts = Counter(kind for kind, *_ in skipped)
    order = {kind: i for i, kind in enumerate(kinds)}
    lines = [f"# {title}"]
    lines += [f"# {kind}: {counts.get(kind, 0)}" for kind in kinds]
    lines += [f"# {k}: {counts[k]}" for k in sorted(counts) if k not in order]
    lines.append("# kind\tID\tpath\tdetail")
    for kind, uid, where, detail in sorted(
        skipped, key=lambda s: (order.get(s[0], 99), s[1], s[2])
    ):
        lines.append(f"{kind}\t{uid}\t{where}\t{detail}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_outputs(
    save_folder: str,
    manifests: dict[str, list[dict]],
    fields: Sequence[str],
    prepared: Prepared,
    options: dict,
    report_name: str,
    title: str,
    kinds: Sequence[str],
    extra: dict | None = None,
) -> dict[str, str]:
    """Write the report, one ``.json`` summary and one ``.csv`` per manifest.

    The manifests are renamed into place last, so a finished ``.csv`` always
    has its summary beside it. One log line summarises the whole preparation
    (a warning when something was skipped).

    Returns
    -------
    dict
        Manifest name to ``.csv`` path.
    """
    os.makedirs(save_folder, exist_ok=True)
    report = os.path.join(save_folder, report_name)
    write_report(report, title, prepared.skipped, kinds)
    counts = prepared.counts()
    outputs = {}
    for name, rows in manifests.items():
        meta = {
            "options": options,
            "utterances": len(rows),
            "hours": round(sum(float(r["duration"]) for r in rows) / 3600.0, 4),
            "skipped": dict(counts),
            **(extra or {}),
        }
        atomic_write_text(
            os.path.join(save_folder, f"{name}.json"),
            json.dumps(meta, indent=1) + "\n",
        )
    for name, rows in manifests.items():
        path = os.path.join(save_folder, f"{name}.csv")
        write_manifest(path, rows, fields)
        outputs[name] = path
    sizes = ", ".join(f"{n}={len(r)}" for n, r in manifests.items())
    text = f"{title}: {sizes} utterances, {prepared.hours():.2f} h"
    if counts:
        detail = ", ".join(f"{k}={counts[k]}" for k in kinds if counts.get(k))
        others = ", ".join(f"{k}={counts[k]}" for k in sorted(counts) if k not in kinds)
        logger.warning(
            "%s; skipped %d (%s), listed in %s",
            text,
            sum(counts.values()),
            ", ".join(x for x in (detail, others) if x),
            report,
        )
    else:
        logger.info("%s; nothing skipped", text)
    return outputs


def probe_files(
    items: Sequence,
    path_of: Callable,
    audio_check: str = "header",
    sample_rate: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str = "audio",
) -> Iterable:
    """Yield ``(item, (frames, rate) or None, AudioError or None)`` in order.

    Audio headers are read by a pool of threads (missing files give an
    ``AudioError`` of kind ``missing_audio``).
    """

    def probe(item):
        path = path_of(item)
        if not os.path.isfile(path):
            return item, None, AudioError("missing_audio", "no such file")
        try:
            return item, probe_audio(path, audio_check, sample_rate), None
        except AudioError as exc:
            return item, None, exc

    workers = num_workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from tqdm(
            pool.map(probe, items),
            total=len(items),
            desc=desc,
            unit="file",
            disable=not progress,
            mininterval=0.5,
        )


_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def normalize_words(text: str) -> str:
    """Upper-case words of letters, digits and inner apostrophes (any script).

    Unicode is NFKC-normalised; every other character (punctuation, symbols)
    becomes a word boundary.

    Example
    -------
    >>> normalize_words("Mae'n  braf, heddiw! — ‘Ydy’?")
    "MAE'N BRAF HEDDIW YDY"
    >>> normalize_words("Kaixo, zer moduz?")
    'KAIXO ZER MODUZ'
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    chars = []
    for c in text:
        cat = unicodedata.category(c)
        if cat[0] in "LN" or c == "'" or cat == "Mn":
            chars.append(c)
        else:
            chars.append(" ")
    words = []
    for word in "".join(chars).upper().split():
        word = word.strip("'")
        if word:
            words.append(word)
    return " ".join(words)


def hash_fraction(key: str, seed: int = 0) -> float:
    """A stable pseudo-random number in ``[0, 1)`` for ``key`` (split choices).

    Example
    -------
    >>> hash_fraction("a") == hash_fraction("a"), 0 <= hash_fraction("b") < 1
    (True, True)
    """
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def prepare_tokenizer(
    train_csv: str,
    tokenizer_file: str,
    unit: str = "char",
    vocab_size: int = 100,
    max_units: int | None = None,
):
    """Train the CTC units on ``train_csv`` once; save them at ``tokenizer_file``.

    The units live at a fixed path (the recipe's ``tokenizer_file``) so that
    evaluation rebuilds exactly what training used; a later call loads them.

    Arguments
    ---------
    train_csv : str
        Training manifest (``wrd`` column).
    tokenizer_file : str
        ``.txt`` (characters) or ``.model`` (sentencepiece) destination.
    unit : str
        ``"char"`` or ``"bpe"``.
    vocab_size : int
        BPE vocabulary size (blank included).
    max_units : int, optional
        The size of the model's output layer: more units is an error.

    Returns
    -------
    CharTokenizer or SentencePieceTokenizer
    """
    from speechbrain_wsm.data._io import read_manifest
    from speechbrain_wsm.data.tokenizers import (
        CharTokenizer,
        load_tokenizer,
        train_bpe_tokenizer,
    )

    if unit not in ("char", "bpe"):
        raise ValueError(f"unit must be 'char' or 'bpe', got {unit!r}")
    if not os.path.isfile(tokenizer_file):
        folder = os.path.dirname(os.path.abspath(tokenizer_file))
        os.makedirs(folder, exist_ok=True)
        if unit == "char":
            if not os.path.isfile(train_csv):
                raise FileNotFoundError(f"training manifest '{train_csv}' not found")
            texts = [r["wrd"] for r in read_manifest(train_csv) if r["wrd"].strip()]
            CharTokenizer.from_texts(texts).save(tokenizer_file)
        else:
            tok = train_bpe_tokenizer(
                train_csv, vocab_size=vocab_size, save_folder=folder, redo=True
            )
            if os.path.abspath(tok.model_path) != os.path.abspath(tokenizer_file):
                shutil.copyfile(tok.model_path, tokenizer_file)
    tok = load_tokenizer(tokenizer_file)
    if max_units is not None and len(tok) > max_units:
        raise ValueError(
            f"{tokenizer_file} has {len(tok)} units but the model outputs "
            f"{max_units}: raise output_neurons to at least {len(tok)}"
        )
    return tok
