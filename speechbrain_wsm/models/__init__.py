"""Assembled models.

- :mod:`.wav2vec2`: wav2vec 2.0 front ends, context network, pretrainer, loss,
  :func:`~.wav2vec2.load_pretrained_encoder`
- :mod:`.lengths`: relative lengths to absolute lengths and padding masks
  (the one conversion), and the per-utterance standardisation
- :mod:`.upstream`: the one SSL upstream: ``ssl_source`` (this project's
  pretraining output or a Hugging Face folder) -> hidden states and frame
  lengths, frozen or trainable; everything Hugging Face specific
- :mod:`.surgery`: swap self-attention of SSL models for SummaryMixing blocks
- :mod:`.ssl_ctc`: CTC models on an SSL upstream and the folder a fine-tuned
  one is saved in; :mod:`.finetuning`: building and loading them (selective
  CTC fine-tuning of pretrained SSL encoders)
- :mod:`.ssl`: frozen SSL encoders for probing (feature cache, probe)
"""
