"""speechbrain-wsm: SummaryMixing and Windowed SummaryMixing for SpeechBrain."""

__version__ = "0.1.0"
