"""Transcript normalisation in the LibriSpeech style.

LibriSpeech transcripts are upper case words made of the letters A to Z and the
apostrophe, separated by single spaces: no digits, no punctuation.  The corpora
this project builds (Asterisk prompts, LibriVox test data, Bible verses read by
a synthesiser) start as ordinary written English, so :func:`normalize_text`
spells out numbers and symbols and strips punctuation until the text reads the
way LibriSpeech's does.

Numbers are read as cardinals ("21" -> "TWENTY ONE", "1234" -> "ONE THOUSAND
TWO HUNDRED THIRTY FOUR"), ordinals as ordinals ("3rd" -> "THIRD"), decimals
digit by digit after "POINT".  A recording may read a long number differently
(digit by digit, as a year, ...); builders that know their audio drop such
utterances rather than guess (see :mod:`speechbrain_wsm.data.debian_corpus`).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "SYMBOL_WORDS",
    "is_utf8",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
]


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (a file name or argument with bytes that
    are not UTF-8 holds surrogates, which do not).

    Example
    -------
    >>> is_utf8("Ærø"), is_utf8("a" + chr(0xDCFF))  # a surrogate: an escaped byte
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ONES = [
    "ZERO",
    "ONE",
    "TWO",
    "THREE",
    "FOUR",
    "FIVE",
    "SIX",
    "SEVEN",
    "EIGHT",
    "NINE",
    "TEN",
    "ELEVEN",
    "TWELVE",
    "THIRTEEN",
    "FOURTEEN",
    "FIFTEEN",
    "SIXTEEN",
    "SEVENTEEN",
    "EIGHTEEN",
    "NINETEEN",
]
_TENS = [
    "",
    "",
    "TWENTY",
    "THIRTY",
    "FORTY",
    "FIFTY",
    "SIXTY",
    "SEVENTY",
    "EIGHTY",
    "NINETY",
]
_SCALES = [
    (10**12, "TRILLION"),
    (10**9, "BILLION"),
    (10**6, "MILLION"),
    (10**3, "THOUSAND"),
]
# Ordinal forms of the last word of a cardinal; other words take "TH".
_ORDINAL_WORDS = {
    "ONE": "FIRST",
    "TWO": "SECOND",
    "THREE": "THIRD",
    "FIVE": "FIFTH",
    "EIGHT": "EIGHTH",
    "NINE": "NINTH",
    "TWELVE": "TWELFTH",
}

#: Spoken form of the symbols kept as words (telephone keypad reading for # and *).
SYMBOL_WORDS = {
    "#": "POUND",
    "*": "STAR",
    "%": "PERCENT",
    "&": "AND",
    "@": "AT",
    "+": "PLUS",
    "=": "EQUALS",
    "$": "DOLLARS",
}


def number_to_words(n: int) -> str:
    """Spell a non-negative integer as an upper case English cardinal.

    Arguments
    ---------
    n : int
        The number, ``0 <= n < 10**15``.

    Returns
    -------
    str
        Words separated by single spaces, without "AND" (American style).

    Example
    -------
    >>> number_to_words(21)
    'TWENTY ONE'
    >>> number_to_words(1905)
    'ONE THOUSAND NINE HUNDRED FIVE'
    >>> number_to_words(0)
    'ZERO'
    """
    if n < 0 or n >= 10**15:
        raise ValueError(f"number_to_words supports 0 <= n < 10**15, got {n}")
    if n < 20:
        return _ONES[n]
    words = []
    for value, name in _SCALES:
        if n >= value:
            words += [number_to_words(n // value), name]
            n %= value
    if n >= 100:
        words += [_ONES[n // 100], "HUNDRED"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Spell ``n`` as an upper case English ordinal ("TWENTY FIRST").

    ``n`` and its range are as for :func:`number_to_words`, whose last word
    becomes the ordinal one.

    Example
    -------
    >>> ordinal_to_words(21)
    'TWENTY FIRST'
    >>> ordinal_to_words(40)
    'FORTIETH'
    >>> ordinal_to_words(12)
    'TWELFTH'
    """
    words = number_to_words(n).split(" ")
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("Y"):
        words[-1] = last[:-1] + "IETH"
    else:
        words[-1] = last + "TH"
    return " ".join(words)


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def _money(match: re.Match) -> str:
    whole, cents = match.group(1).replace(",", ""), match.group(2)
    words = f" {number_to_words(int(whole))} DOLLARS "
    if cents and int(cents):
        words += f"AND {number_to_words(int(cents))} CENTS "
    return words


def _decimal(match: re.Match) -> str:
    whole, frac = match.group(1).replace(",", ""), match.group(2)
    return f" {number_to_words(int(whole))} POINT {_digits_to_words(frac)} "


def _ordinal(match: re.Match) -> str:
    return f" {ordinal_to_words(int(match.group(1)))} "


def _cardinal(match: re.Match) -> str:
    return f" {number_to_words(int(match.group(0).replace(',', '')))} "


def _acronym(match: re.Match) -> str:
    return " " + " ".join(match.group(0).replace(".", " ").split()) + " "


_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": " - ",
        "\u2026": " ",
    }
)
_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_MONEY = re.compile(rf"\$\s?({_NUM})(?:\.(\d\d))?\b")
_PERCENT = re.compile(r"%")
_DECIMAL = re.compile(rf"\b({_NUM})\.(\d+)\b")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_CARDINAL = re.compile(_NUM)
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_DOTTED_ACRONYM = re.compile(r"\b(?:[A-Za-z]\.){2,}")
_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
_SYMBOLS = re.compile("|".join(re.escape(s) for s in SYMBOL_WORDS))
_NOT_WORD = re.compile(r"[^A-Z' ]+")
_LOOSE_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")


def transliterate(text: str, lost: list | None = None) -> str:
    """Latin letters outside ASCII written in ASCII letters (anyascii).

    Only the letters of the Latin script are transliterated ("Ærøskøbing" ->
    "Aeroskobing", "ß" -> "ss", "Łódź" -> "Lodz"); symbols and punctuation
    are left to :func:`normalize_text`'s own rules. A letter of another
    script (a LibriSpeech transcript spells English), or one without an
    ASCII form, is dropped and, when ``lost`` is a list, appended to it.

    Example
    -------
    >>> lost = []
    >>> transliterate("Ærøskøbing \u65e5", lost), lost
    ('Aeroskobing ', ['日'])
    """
    from anyascii import anyascii

    out = []
    for c in text:
        if c.isascii() or not unicodedata.category(c).startswith("L"):
            out.append(c)
            continue
        latin = unicodedata.name(c, "").startswith("LATIN ")
        ascii_form = anyascii(c) if latin else ""
        if ascii_form:
            out.append(ascii_form)
        elif lost is not None:
            lost.append(c)
    return "".join(out)


def normalize_text(text: str, lost: list | None = None) -> str:
    """Normalise written English into a LibriSpeech-style transcript.

    Letters outside A-Z are transliterated (:func:`transliterate`:
    "Ærøskøbing" -> "AEROSKOBING", not "R SK BING"); a letter without an
    ASCII form is dropped and, when ``lost`` is a list, appended to it so
    that the caller can count it. Upper case; numbers, ordinals, decimals, amounts of money and the symbols of
    :data:`SYMBOL_WORDS` spelled out; dotted acronyms as letters ("A.M." -> "A
    M"); hyphenated words split; apostrophes kept inside words ("DON'T",
    "PARTY'S") and dropped elsewhere; every other character removed; single
    spaces between words.

    Arguments
    ---------
    text : str
        Any text.

    Returns
    -------
    str
        The normalised transcript (possibly empty).

    Example
    -------
    >>> normalize_text("Press 1 to mute, or # to exit.")
    'PRESS ONE TO MUTE OR POUND TO EXIT'
    >>> normalize_text("He paid $9.99 for the 21st copy -- 100% sure!")
    'HE PAID NINE DOLLARS AND NINETY NINE CENTS FOR THE TWENTY FIRST COPY ONE HUNDRED PERCENT SURE'
    >>> normalize_text("I'm sorry, it's 3D audio at 7 A.M. (re-record)")
    "I'M SORRY IT'S THREE D AUDIO AT SEVEN A M RE RECORD"
    >>> normalize_text("Ærøskøbing, Łódź")
    'AEROSKOBING LODZ'
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = transliterate(text, lost)
    text = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    )
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(" PERCENT ", text)
    text = _DECIMAL.sub(_decimal, text)
    text = _ORDINAL.sub(_ordinal, text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _CARDINAL.sub(_cardinal, text)
    text = _DOTTED_ACRONYM.sub(_acronym, text)
    text = _HYPHEN.sub(" ", text)
    text = _SYMBOLS.sub(lambda m: f" {SYMBOL_WORDS[m.group(0)]} ", text)
    text = _NOT_WORD.sub(" ", text.upper())
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())
