"""Tiny pretrained SSL models saved to local folders, for the surgery and recipe tests.

* :func:`tiny_hf_config` / :func:`save_tiny_hf`: Hugging Face wav2vec 2.0,
  HuBERT and WavLM configs a few kilobytes in size (4 layers of width 32,
  a 3-layer CNN with a 320x downsampling: 20 ms frames at 16 kHz), base
  (post-LayerNorm) or large (pre-LayerNorm, ``do_stable_layer_norm``),
  saved with ``save_pretrained``; no hub.
* :func:`save_tiny_wav2vec2`: this project's wav2vec 2.0 pretraining output
  folder (resolved ``hyperparams.yaml`` + a SpeechBrain checkpoint in
  ``save/``), as :func:`speechbrain_wsm.models.wav2vec2.load_pretrained_encoder`
  reads it.

Importable from the tests because ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default import mode).
"""

from __future__ import annotations

from pathlib import Path

import torch

HF_KINDS = ("wav2vec2", "hubert", "wavlm")


def tiny_hf_config(kind: str = "wav2vec2", large: bool = False, **overrides):
    """A tiny, deterministic (no dropout, layerdrop or masking) HF config."""
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    config_class = {
        "wav2vec2": Wav2Vec2Config,
        "hubert": HubertConfig,
        "wavlm": WavLMConfig,
    }[kind]
    kwargs = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 8, 8),
        conv_stride=(5, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=large,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
        vocab_size=8,
    )
    if kind == "wavlm":
        kwargs.update(num_buckets=16, max_bucket_distance=40)
    kwargs.update(overrides)
    return config_class(**kwargs)


def tiny_hf_model(kind="wav2vec2", large=False, ctc=False, seed=0, **overrides):
    """A tiny HF model (base, or ``ForCTC`` with ``ctc=True``), in eval mode."""
    import transformers

    prefix = {"wav2vec2": "Wav2Vec2", "hubert": "Hubert", "wavlm": "WavLM"}[kind]
    model_class = getattr(transformers, prefix + ("ForCTC" if ctc else "Model"))
    torch.manual_seed(seed)
    return model_class(tiny_hf_config(kind, large, **overrides)).eval()


def save_tiny_hf(folder, kind="wav2vec2", large=False, ctc=False, **overrides) -> Path:
    """Save a tiny HF model to ``folder`` with ``save_pretrained``."""
    folder = Path(folder)
    tiny_hf_model(kind, large, ctc, **overrides).save_pretrained(folder)
    return folder


WAV2VEC2_YAML = """\
wav2vec2: !new:speechbrain_wsm.models.wav2vec2.Wav2Vec2Pretrainer
    latent_extractor: !new:speechbrain_wsm.models.wav2vec2.FbankLatentExtractor
        n_mels: 20
        channels: [16, 16]
    encoder: !new:speechbrain_wsm.nnet.encoders.MixerEncoder
        num_layers: 3
        d_model: 16
        nhead: 2
        d_ffn: 32
        mixer: {mixer}
        arch: conformer
        kernel_size: 3
        dropout: 0.0
        positional_encoding: sine
    quantiser: !new:speechbrain.lobes.models.wav2vec.W2VTargetQuantiser
        in_dim: 16
        out_dim: 8
        num_vars: 10
    final_dim: 8
    dropout_input: 0.0
"""


def save_tiny_wav2vec2(folder, mixer: str = "mhsa", seed: int = 0) -> Path:
    """A tiny wav2vec 2.0 pretraining output folder of this project.

    Writes ``hyperparams.yaml`` and one checkpoint in ``save/`` holding
    ``wav2vec2.ckpt`` (weights drawn at random with ``seed``: what matters to
    the surgery is the architecture and that the weights load).
    """
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import Checkpointer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = WAV2VEC2_YAML.format(mixer=mixer)
    (folder / "hyperparams.yaml").write_text(text)
    torch.manual_seed(seed)
    model = load_hyperpyyaml(text)["wav2vec2"]
    Checkpointer(folder / "save", {"wav2vec2": model}).save_checkpoint()
    return folder


def waveforms(lengths, seed: int = 0):
    """A padded batch of random waveforms and their relative lengths."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wav[i, :n] = 0.1 * torch.randn(n, generator=gen)
    return wav, torch.tensor([n / max(lengths) for n in lengths])
