"""Rebuild ``tests/samples/learning/LibriSpeech/train-learn`` (16 synthetic utterances).

The learning tests of the CTC recipes overfit this fixed set; it is committed
so that every run sees the same audio. Run from the repository root (needs
Debian's flite): ``python tests/samples/learning/make_learning_set.py``.
"""

import subprocess
import tempfile
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

TEXTS = [
    "THE CAT SAT ON THE MAT",
    "A RED FOX RAN HOME",
    "SHE SAW SIX BIG DOGS",
    "WE LIKE COLD MILK",
    "OPEN THE GREEN DOOR",
    "HE PLAYS THE DRUM",
    "MY BOOK IS BLUE",
    "QUICK JUMPS OVER WALLS",
    "THEY WALK IN THE PARK",
    "FIVE SMALL BIRDS FLEW",
    "PUT IT ON THE TABLE",
    "THE SUN IS VERY HOT",
    "YOU CAN READ A MAP",
    "BRING ME THE WATER",
    "LOOK AT THE ZEBRA",
    "HIS NAME IS JACK",
]
VOICES = ["kal16", "slt", "rms", "awb"]


def main():
    out = Path(__file__).resolve().parent / "LibriSpeech" / "train-learn"
    for i, text in enumerate(TEXTS):
        spk, chap = 100 + i % len(VOICES), 1
        folder = out / str(spk) / str(chap)
        folder.mkdir(parents=True, exist_ok=True)
        uid = f"{spk}-{chap}-{i:04d}"
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "x.wav"
            voice = VOICES[i % len(VOICES)]
            subprocess.run(
                ["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True
            )
            audio, rate = sf.read(wav, dtype="float32")
        audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)
        sf.write(folder / f"{uid}.flac", audio.numpy(), 16000)
        with open(folder / f"{spk}-{chap}.trans.txt", "a", encoding="utf-8") as f:
            f.write(f"{uid} {text}\n")


if __name__ == "__main__":
    main()
