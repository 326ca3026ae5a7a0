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
def learning_samples() -> Path:
    """``tests/samples/learning/LibriSpeech``: the 16 utterances of ``train-learn``
    that the learning tests overfit."""
    return SAMPLES / "learning" / "LibriSpeech"


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
    """Tiny pretrained SSL folders (random weights, :mod:`tiny_models`):
    ``hf`` (Hugging Face wav2vec 2.0), ``hf-hubert``, ``hf-wavlm``,
    ``hf-wavlm-large`` (pre-LayerNorm) and ``project`` (a wav2vec 2.0
    pretraining output of this project)."""
    from tiny_models import save_tiny_hf, save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("ssl")
    return {
        "hf": save_tiny_hf(root / "hf", "wav2vec2"),
        "hf-hubert": save_tiny_hf(root / "hubert", "hubert"),
        "hf-wavlm": save_tiny_hf(root / "wavlm", "wavlm"),
        "hf-wavlm-large": save_tiny_hf(root / "wavlm-large", "wavlm", large=True),
        "project": save_tiny_wav2vec2(root / "project"),
    }


@pytest.fixture(scope="session")
def project_encoder(tmp_path_factory) -> str:
    """The pretraining recipe's output folder, shrunk (WSM, 16 wide; random
    weights): :func:`tiny_models.make_project_encoder`."""
    from tiny_models import make_project_encoder

    return make_project_encoder(tmp_path_factory.mktemp("w2v2"))


@pytest.fixture(scope="session")
def learning_encoder(tmp_path_factory) -> str:
    """:func:`project_encoder` 64 wide: a random encoder narrower than this keeps
    too little of the signal for the learning tests' heads to learn from."""
    from tiny_models import make_project_encoder

    return make_project_encoder(tmp_path_factory.mktemp("w2v2-64"), d_model=64)


@pytest.fixture(scope="session")
def hf_encoder(tmp_path_factory) -> str:
    """A pre-LayerNorm Hugging Face wav2vec 2.0 folder with the 7-layer CNN
    (random weights): :func:`tiny_models.make_hf_encoder`."""
    from tiny_models import make_hf_encoder

    return make_hf_encoder(tmp_path_factory.mktemp("hf"))


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
