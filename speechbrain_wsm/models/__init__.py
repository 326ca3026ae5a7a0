"""Assembled models.

- :mod:`.wav2vec2`: wav2vec 2.0 front ends, context network, pretrainer, loss,
  :func:`~.wav2vec2.load_pretrained_encoder`
- :mod:`.lengths`: relative lengths to padding masks (the one conversion)
- :mod:`.surgery`: swap self-attention of SSL models for SummaryMixing blocks
- :mod:`.finetuning`: CTC fine-tuning of pretrained SSL encoders
- :mod:`.ssl`: frozen SSL encoders for probing
"""
