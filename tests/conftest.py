"""Shared fixtures: the committed real-speech sample, tiny LibriSpeech trees,
tiny pretrained SSL folders, and a probe of the largest tensor an operation makes."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils._python_dispatch import TorchDispatchMode

SAMPLES = Path(__file__).resolve().parent / "samples"


@pytest.fixture
def librispeech_samples() -> Path:
    """``tests/samples/LibriSpeech``: five LibriVox utterances in ``test-clean``."""
    return SAMPLES / "LibriSpeech"


@pytest.fixture
def make_librispeech_split():
    """A function writing ``(uid, words)`` utterances in the LibriSpeech layout.

    Audio is a short tone whose length grows with the utterance's position, so
    every utterance has a distinct, known duration (``0.25 + 0.05 * i`` s).
    """

    def make(folder, utterances, rate=16000):
        folder = Path(folder)
        for i, (uid, words) in enumerate(utterances):
            spk, chap, _ = uid.split("-")
            chapter = folder / spk / chap
            chapter.mkdir(parents=True, exist_ok=True)
            n = int((0.25 + 0.05 * i) * rate)
            tone = 0.1 * np.sin(np.arange(n) * 2 * np.pi * 220 / rate)
            sf.write(chapter / f"{uid}.flac", tone.astype("float32"), rate)
            with open(chapter / f"{spk}-{chap}.trans.txt", "a", encoding="utf-8") as f:
                f.write(f"{uid} {words}\n")
        return folder

    return make


@pytest.fixture(scope="session")
def tiny_ssl_sources(tmp_path_factory) -> dict:
    """Two tiny pretrained SSL folders: ``hf`` (Hugging Face wav2vec 2.0) and
    ``project`` (a wav2vec 2.0 pretraining output of this project)."""
    from tiny_models import save_tiny_hf, save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("ssl")
    return {
        "hf": save_tiny_hf(root / "hf", "wav2vec2"),
        "project": save_tiny_wav2vec2(root / "project"),
    }


class LargestTensor(TorchDispatchMode):
    """Records in ``largest`` the size (elements) of the largest tensor any
    operation produces while it is active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.fixture
def largest_tensor():
    """``with largest_tensor() as seen: ...``, then ``seen.largest``: the most
    elements of any tensor made inside (forward and backward)."""
    return LargestTensor
