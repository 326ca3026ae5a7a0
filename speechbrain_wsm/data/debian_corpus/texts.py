"""The corpus's transcripts: reading, cleaning, and a split sharing no sentence."""

from __future__ import annotations

import gzip
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass

from .._system import require_path
from ..text import normalize_text
from .sources import ASTERISK_TRANSCRIPTS, LIBRIVOX_DIR

__all__ = [
    "Prompt",
    "clean_asterisk_prompt",
    "prompt_sentences",
    "read_asterisk_transcripts",
    "read_librivox_transcripts",
    "split_prompts",
]

# Spelling slips in core-sounds-en.txt, fixed to the words that are spoken.
_CORRECTIONS = {
    "umute": "unmute",
    "un-indentified": "unidentified",
    "witheld": "withheld",
    "exclaimation": "exclamation",
    "fourtieth": "fortieth",
    "thru": "through",
    "represenatives": "representatives",
}
# Upper case acronyms that are spelled letter by letter; any other one (SIP,
# IAX, DAHDI: often said as words) makes the reading uncertain.
_SPELLED_ACRONYMS = {"PBX", "USB", "MGCP"}
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")
_CORRECTION_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in _CORRECTIONS) + r")\b", re.IGNORECASE
)
_ALL_ANNOTATION = re.compile(r"^\s*[\[(<].*[\])>]\s*$")
_URL = re.compile(r"\bwww\b|\w+\.(?:org|com|net)\b|@\w", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"\d{3,}|\d[.,]\d")
_LETTER_DIGIT = re.compile(r"[A-Za-z]\d|\d[A-Za-z]|[A-Za-z]\.\d")


@dataclass
class Prompt:
    """One utterance of the corpus before it is written."""

    uid: str
    words: str
    source: str
    duration: float
    raw: str = ""


def read_asterisk_transcripts(path: str = ASTERISK_TRANSCRIPTS) -> dict[str, str]:
    """Read ``core-sounds-en.txt`` (optionally gzipped): prompt name to text.

    Arguments
    ---------
    path : str
        The transcript file; lines ``name: text``, ``;`` comments.

    Returns
    -------
    dict
        ``{"digits/1": "one", ...}``; a name repeated later wins.

    Example
    -------
    >>> import gzip, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "core-sounds-en.txt.gz")
    >>> with gzip.open(p, "wt") as f:
    ...     _ = f.write("; comment\\nhello: Hello.\\nhello: Hello there.\\nbye: Bye.\\n")
    >>> read_asterisk_transcripts(p)
    {'hello': 'Hello there.', 'bye': 'Bye.'}
    """
    require_path(path, "asterisk-core-sounds-en", "Asterisk prompt transcripts")
    opener = gzip.open if path.endswith(".gz") else open
    prompts = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            prompts[name.strip()] = text.strip()
    return prompts


def clean_asterisk_prompt(name: str, text: str) -> tuple[str | None, str]:
    """Normalise one Asterisk prompt transcript, or say why it is left out.

    Arguments
    ---------
    name : str
        Prompt name, e.g. ``"vm-intro"`` or ``"digits/7"``.
    text : str
        Its line in ``core-sounds-en.txt``.

    Returns
    -------
    words : str or None
        The normalised transcript, ``None`` when left out.
    reason : str
        ``"ok"`` or why it was left out (``non_speech``, ``annotated``,
        ``web_address``, ``ambiguous_number``, ``ambiguous_acronym``,
        ``empty``).

    Example
    -------
    >>> clean_asterisk_prompt("vm-next", "Press 6 to play the next message.")
    ('PRESS SIX TO PLAY THE NEXT MESSAGE', 'ok')
    >>> clean_asterisk_prompt("letters/at", "at [@]")
    ('AT', 'ok')
    >>> clean_asterisk_prompt("beep", "[this is a simple beep tone]")
    (None, 'non_speech')
    >>> clean_asterisk_prompt("x", "dial 500 now")
    (None, 'ambiguous_number')
    """
    if name.startswith("silence/") or _ALL_ANNOTATION.match(text):
        return None, "non_speech"
    if "(" in text or "<" in text:
        return None, "annotated"
    text = re.sub(r"\[[^\]]*\]", " ", text)
    if _URL.search(text):
        return None, "web_address"
    if _LONG_NUMBER.search(text) or _LETTER_DIGIT.search(text):
        return None, "ambiguous_number"
    acronyms = set(_ACRONYM.findall(text))
    if acronyms - _SPELLED_ACRONYMS:
        return None, "ambiguous_acronym"
    text = _ACRONYM.sub(lambda m: " ".join(m.group(0)), text)
    text = _CORRECTION_RE.sub(lambda m: _CORRECTIONS[m.group(0).lower()], text)
    words = normalize_text(text)
    if not words:
        return None, "empty"
    return words, "ok"


def read_librivox_transcripts(folder: str = LIBRIVOX_DIR) -> list[tuple[str, str]]:
    """Read pocketsphinx's LibriVox ``transcription`` file.

    Arguments
    ---------
    folder : str
        The folder holding ``transcription`` and the ``.wav`` files.

    Returns
    -------
    list of (str, str)
        ``(file stem, normalised transcript)`` pairs in file order.

    Example
    -------
    >>> import os
    >>> if os.path.isdir(LIBRIVOX_DIR):
    ...     print(read_librivox_transcripts()[1][1])
    ... else:
    ...     print("HE WAS NOT AN ILL DISPOSED YOUNG MAN")
    HE WAS NOT AN ILL DISPOSED YOUNG MAN
    """
    path = require_path(
        os.path.join(folder, "transcription"),
        "pocketsphinx-testdata",
        "LibriVox test transcriptions",
    )
    items = []
    line_re = re.compile(r"^(?:<s>)?(.*?)(?:</s>)?\s*\(([^()]+)\)\s*$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = line_re.match(line.strip())
            if match:
                items.append((match.group(2).strip(), normalize_text(match.group(1))))
    return items


def prompt_sentences(prompt: Prompt) -> set[str]:
    """The normalised sentences of a prompt (and its whole text).

    Example
    -------
    >>> sorted(prompt_sentences(Prompt("1-1-0001", "HI THERE BYE", "", 1.0,
    ...                                "Hi there. Bye!")))
    ['BYE', 'HI THERE', 'HI THERE BYE']
    """
    parts = re.split(r"[.!?;:]+|\.\.\.", prompt.raw) if prompt.raw else [prompt.words]
    found = {normalize_text(p) for p in parts}
    found.add(prompt.words)
    return {s for s in found if s}


def split_prompts(
    prompts: list[Prompt], finetune_seconds: float, seed: int = 0
) -> tuple[list[Prompt], list[Prompt]]:
    """Split prompts into a fine-tuning and a test set sharing no sentence.

    Prompts sharing a sentence (or their whole text) form one group; groups are
    shuffled with ``seed`` and taken into the fine-tuning set until it reaches
    ``finetune_seconds``.

    Arguments
    ---------
    prompts : list of Prompt
        Candidate utterances (``raw`` holds the written text, if any).
    finetune_seconds : float
        Target fine-tuning set duration.
    seed : int
        Shuffling seed.

    Returns
    -------
    finetune, test : list of Prompt
        Both sorted by ID.

    Example
    -------
    >>> ps = [Prompt(f"1-1-{i:04d}", w, "", 2.0) for i, w in
    ...       enumerate(["HELLO", "HELLO", "GOOD BYE", "THANK YOU", "AGAIN"])]
    >>> ft, te = split_prompts(ps, 4.0)
    >>> {p.words for p in ft} & {p.words for p in te}
    set()
    """
    parent = list(range(len(prompts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, prompt in enumerate(prompts):
        for sentence in prompt_sentences(prompt):
            if sentence in owner:
                parent[find(i)] = find(owner[sentence])
            else:
                owner[sentence] = i
    groups: dict[int, list[Prompt]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[find(i)].append(prompt)
    ordered = sorted(groups.values(), key=lambda g: min(p.uid for p in g))
    random.Random(seed).shuffle(ordered)
    finetune, test, total = [], [], 0.0
    for group in ordered:
        length = sum(p.duration for p in group)
        if total < finetune_seconds and total + length <= finetune_seconds + 15.0:
            finetune.extend(group)
            total += length
        else:
            test.extend(group)
    return sorted(finetune, key=lambda p: p.uid), sorted(test, key=lambda p: p.uid)
