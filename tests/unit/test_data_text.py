"""The LibriSpeech-style normaliser: properties of its output."""

import random
import re

import pytest

from speechbrain_wsm.data.text import (
    SYMBOL_WORDS,
    normalize_text,
    number_to_words,
    ordinal_to_words,
)

LIBRISPEECH_TEXT = re.compile(r"^(?:[A-Z']+(?: [A-Z']+)*)?$")

_SMALL = {
    w: i
    for i, w in enumerate(
        "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN "
        "FOURTEEN FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN".split()
    )
}
_SMALL.update(
    {
        w: 10 * (i + 2)
        for i, w in enumerate(
            "TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
        )
    }
)
_SCALE = {"THOUSAND": 10**3, "MILLION": 10**6, "BILLION": 10**9, "TRILLION": 10**12}


def words_to_number(words):
    """An independent reader of the cardinals number_to_words writes."""
    total, current = 0, 0
    for w in words.split():
        if w in _SMALL:
            current += _SMALL[w]
        elif w == "HUNDRED":
            current *= 100
        else:
            total += current * _SCALE[w]
            current = 0
    return total + current


SENTENCES = [
    "Press 1 to mute or unmute yourself, 2 to lock the conference.",
    "Please enter your password followed by the # key, or * to cancel.",
    "It's 100% done & dusted -- said the 3rd caller at 7 A.M.",
    "Thank you for calling Super Awesome Company, Waldo's premier provider!",
    "\u201cQuoted\u201d text \u2014 with dashes\u2026 and caf\u00e9s",
    "And God said, Let there be light: and there was light.",
    "He paid $1,250.50 for 2 tickets (about 28.8 each).",
    "",
    "   ",
    "...!?",
]


def test_cardinals_read_back():
    rng = random.Random(0)
    numbers = list(range(0, 1200)) + [rng.randrange(10**15) for _ in range(500)]
    for n in numbers:
        words = number_to_words(n)
        assert LIBRISPEECH_TEXT.match(words)
        assert words_to_number(words) == n


def test_ordinals():
    assert ordinal_to_words(1) == "FIRST"
    assert ordinal_to_words(22) == "TWENTY SECOND"
    assert ordinal_to_words(100) == "ONE HUNDREDTH"
    for n in range(1, 200):
        ordinal = ordinal_to_words(n)
        assert LIBRISPEECH_TEXT.match(ordinal)
        assert ordinal != number_to_words(n)
        # only the last word changes
        assert ordinal.split()[:-1] == number_to_words(n).split()[:-1]


@pytest.mark.parametrize("n", [-1, 10**15])
def test_number_range(n):
    with pytest.raises(ValueError):
        number_to_words(n)


@pytest.mark.parametrize("text", SENTENCES)
def test_output_is_librispeech_text_and_stable(text):
    out = normalize_text(text)
    assert LIBRISPEECH_TEXT.match(out), out
    assert normalize_text(out) == out  # idempotent


def test_digits_and_symbols_spelled():
    assert normalize_text("press 21") == "PRESS TWENTY ONE"
    for symbol, word in SYMBOL_WORDS.items():
        if symbol != "$":
            assert word in normalize_text(f"a {symbol} b").split()
    assert normalize_text("$5") == "FIVE DOLLARS"
    assert not re.search(r"\d", normalize_text("call 555 1234 at 9 30"))


def test_apostrophes_and_punctuation():
    assert (
        normalize_text("Don't stop, it's the party's end.")
        == "DON'T STOP IT'S THE PARTY'S END"
    )
    assert normalize_text("'quoted'") == "QUOTED"
    assert normalize_text("re-record; Call-Forward") == "RE RECORD CALL FORWARD"
    assert normalize_text("A.M. and P.M.") == "A M AND P M"
    assert normalize_text("3D") == "THREE D"


def test_words_are_preserved():
    text = "the quick brown fox jumps over the lazy dog"
    assert normalize_text(text) == text.upper()
