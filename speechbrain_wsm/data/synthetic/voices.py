"""The synthetic speakers: engine voices, their variants, and which split hears them.

A speaker is one setting of (engine, voice, variant, pitch, vocal-tract
factor); every speaker belongs to exactly one of train, dev and test, and dev
and test only use voices held out of training (flite's ``awb`` voice and a set
of espeak-ng variants).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

__all__ = ["Speaker", "speaker_catalogue"]

# flite voices and the mean F0 settings (Hz) used as speakers (rms has a fixed F0).
_FLITE_F0 = {
    "kal": (95, 110, 125),
    "kal16": (95, 110, 125),
    "slt": (150, 175, 200),
    "rms": (None,),
    "awb": (90, 110, 130),
}
_FLITE_HELD_OUT = {"awb"}
_TRACT = (0.94, 1.0, 1.06)
# More vocal-tract factors for the training flite voices (listed after every
# other speaker, so the IDs above stay as they were): flite has four training
# voices and one held-out voice, so its share of the training speech is
# raised by more variants of each.
_FLITE_EXTRA_TRACT = (0.88, 1.12)
_ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Voice variants that sound like a person (no robots, croaks or whispers).
_ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "adam",
    "Andy",
    "anika",
    "Annie",
    "aunty",
    "belinda",
    "benjamin",
    "caleb",
    "david",
    "edward",
    "Gene",
    "grandpa",
    "iven",
    "john",
    "Lee",
    "linda",
    "max",
    "Michael",
    "norbert",
    "paul",
    "quincy",
    "rob",
    "robert",
    "shelby",
    "steph",
    "travis",
    "victor",
    "zac",
)
_ESPEAK_HELD_OUT = {
    "dev": {"m2", "f2", "Andy", "linda", "quincy"},
    "test": {"m6", "f4", "edward", "steph", "caleb"},
}
_ESPEAK_FEMALE = {"f1", "f2", "f3", "f4", "f5", "anika", "Annie", "aunty", "belinda"}
_ESPEAK_FEMALE |= {"linda", "steph"}
_ESPEAK_PITCH = (35, 50, 65)


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one engine setting, used in one split only."""

    spk_id: str
    engine: str
    voice: str
    variant: str
    pitch: float | None
    tract: float
    split: str

    @property
    def sex(self) -> str:
        """``"F"`` or ``"M"``: the sex of the underlying voice."""
        if self.engine == "espeak-ng":
            return "F" if self.variant in _ESPEAK_FEMALE else "M"
        return "F" if self.voice in ("slt", "heart") else "M"

    def describe(self) -> str:
        """A one-line description for ``SPEAKERS.TXT``."""
        parts = [self.engine, self.voice]
        if self.variant:
            parts.append(f"+{self.variant}")
        if self.pitch is not None:
            parts.append(f"pitch={self.pitch}")
        parts.append(f"tract={self.tract}")
        return " ".join(parts)


def speaker_catalogue(engines=("flite", "espeak-ng", "hibari")) -> list[Speaker]:
    """Every synthetic speaker, with a stable numeric ID and its split.

    IDs do not depend on which engines are selected or installed.

    Arguments
    ---------
    engines : sequence of str
        Engines to list (names from :data:`ENGINES`).

    Returns
    -------
    list of Speaker
        The catalogue, in ID order.

    Example
    -------
    >>> cat = speaker_catalogue()
    >>> sorted({s.split for s in cat})
    ['dev', 'test', 'train']
    >>> held_out = {s.voice for s in cat if s.engine == "flite" and s.split != "train"}
    >>> held_out
    {'awb'}
    """
    catalogue = []
    next_id = count(1001)
    for voice, f0s in _FLITE_F0.items():
        for i, (f0, tract) in enumerate((f, t) for f in f0s for t in _TRACT):
            split = "train"
            if voice in _FLITE_HELD_OUT:
                split = "dev" if i % 2 == 0 else "test"
            catalogue.append(
                Speaker(str(next(next_id)), "flite", voice, "", f0, tract, split)
            )
    for accent in _ESPEAK_ACCENTS:
        for variant in _ESPEAK_VARIANTS:
            split = "train"
            for held, names in _ESPEAK_HELD_OUT.items():
                if variant in names:
                    split = held
            for pitch in _ESPEAK_PITCH:
                catalogue.append(
                    Speaker(
                        str(next(next_id)),
                        "espeak-ng",
                        accent,
                        variant,
                        pitch,
                        1.0,
                        split,
                    )
                )
    for tract in _TRACT:
        catalogue.append(
            Speaker(str(next(next_id)), "hibari", "heart", "", None, tract, "train")
        )
    for voice, f0s in _FLITE_F0.items():
        if voice in _FLITE_HELD_OUT:
            continue
        for f0 in f0s:
            for tract in _FLITE_EXTRA_TRACT:
                catalogue.append(
                    Speaker(str(next(next_id)), "flite", voice, "", f0, tract, "train")
                )
    return [s for s in catalogue if s.engine in engines]
