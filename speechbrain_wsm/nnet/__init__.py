"""Layers: token mixers (SM, WSM, attention), their registry, the encoders, layer fusion."""

from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.nnet.fusion import WeightedLayerSum
from speechbrain_wsm.nnet.registry import MIXERS, build_mixer
from speechbrain_wsm.nnet.summary_mixing import SummaryMixing, WindowedSummaryMixing

__all__ = [
    "MIXERS",
    "MixerEncoder",
    "SummaryMixing",
    "WeightedLayerSum",
    "WindowedSummaryMixing",
    "build_mixer",
]
