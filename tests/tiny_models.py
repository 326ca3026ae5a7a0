"""Tiny SSL models saved to local folders: the one test helper module for encoders.

* :func:`tiny_hf_config` / :func:`save_tiny_hf`: Hugging Face wav2vec 2.0,
  HuBERT and WavLM configs a few kilobytes in size (the benchmarks' tiny
  architecture, :data:`speechbrain_wsm.bench.common.TINY_HF_ARCH`), base
  (post-LayerNorm) or large (pre-LayerNorm, ``do_stable_layer_norm``),
  saved with ``save_pretrained``; no hub.
* :func:`save_tiny_wav2vec2`: this project's wav2vec 2.0 pretraining output
  folder (resolved ``hyperparams.yaml`` + a SpeechBrain checkpoint in
  ``save/``), as :func:`speechbrain_wsm.models.wav2vec2.load_pretrained_encoder`
  reads it.
* :func:`make_project_encoder`: the same, built from the pretraining recipe's
  own ``hparams/wav2vec2_<mixer>.yaml`` shrunk by overrides;
  :func:`make_hf_encoder`: a pre-LayerNorm HF model with the default 7-layer
  CNN, the shape the MP3S probe tests use.

Importable from the tests because ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default import mode).
"""

from __future__ import annotations

from pathlib import Path

import torch
from recipe_helpers import PRETRAINING

from speechbrain_wsm.bench.common import TINY_HF_ARCH

HF_KINDS = ("wav2vec2", "hubert", "wavlm")
#: The config fields that make a HF forward random in training (dropouts, layer
#: drop, time masking): all 0 in the tiny configs.
NO_DROPOUT = (
    "hidden_dropout",
    "attention_dropout",
    "activation_dropout",
    "feat_proj_dropout",
    "final_dropout",
    "layerdrop",
    "mask_time_prob",
)


def tiny_hf_config(kind: str = "wav2vec2", large: bool = False, **overrides):
    """A tiny, deterministic (no dropout, layerdrop or masking) HF config."""
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    config_class = {
        "wav2vec2": Wav2Vec2Config,
        "hubert": HubertConfig,
        "wavlm": WavLMConfig,
    }[kind]
    kwargs = dict(
        TINY_HF_ARCH,
        do_stable_layer_norm=large,
        **dict.fromkeys(NO_DROPOUT, 0.0),
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


def save_tiny_hf(
    folder, kind="wav2vec2", large=False, ctc=False, seed=0, **overrides
) -> Path:
    """Save a tiny HF model to ``folder`` with ``save_pretrained``."""
    folder = Path(folder)
    tiny_hf_model(kind, large, ctc, seed, **overrides).save_pretrained(folder)
    return folder


def make_hf_encoder(
    folder,
    model_type: str = "wav2vec2",
    hidden_size: int = 16,
    num_layers: int = 2,
    seed: int = 0,
) -> str:
    """A pre-LayerNorm HF model with HF's default 7-layer CNN (16 channels)."""
    with torch.random.fork_rng(devices=[]):
        save_tiny_hf(
            folder,
            model_type,
            large=True,
            seed=seed,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden_size,
            conv_dim=(16,) * 7,
            conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2,
        )
    return str(folder)


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


def make_project_encoder(
    folder, mixer: str = "wsm", d_model: int = 16, num_layers: int = 2, seed: int = 0
) -> str:
    """A pretraining output folder of this project, random weights; returns it.

    What the wav2vec 2.0 pretraining recipe leaves behind, without its
    training loop: its own ``hparams/wav2vec2_<mixer>.yaml`` shrunk by
    overrides and resolved into ``<folder>/hyperparams.yaml`` (as
    ``sb.create_experiment_directory`` writes it), and one checkpoint of the
    recipe's checkpointer in ``<folder>/save``.
    """
    import random

    import numpy as np
    import torch
    from hyperpyyaml import load_hyperpyyaml, resolve_references

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {
        "data_folder": str(folder / "unused"),
        "output_folder": str(folder),
        "seed": seed,
        "d_model": d_model,
        "num_layers": num_layers,
        "nhead": 2,
        "d_ffn": 2 * d_model,
        "extractor_dim": d_model,
        "final_dim": 8,
    }
    if mixer == "wsm":
        overrides["window_size"] = 4
    with open(
        PRETRAINING / "hparams" / f"wav2vec2_{mixer}.yaml", encoding="utf-8"
    ) as f:
        resolved = resolve_references(f, overrides).getvalue()
    (folder / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        hparams = load_hyperpyyaml(resolved)
        hparams["checkpointer"].save_checkpoint()
    random.setstate(states[0])
    np.random.set_state(states[1])
    return str(folder)
