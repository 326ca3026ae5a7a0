"""The one SSL upstream: sources, Hugging Face input, lengths, frozen and trainable.

Tiny Hugging Face wav2vec 2.0 / HuBERT / WavLM (pre-LayerNorm "large")
models and this project's tiny pretrained wav2vec 2.0 encoder, saved to local
folders (``tests/tiny_models.py``). The upstream must compute what the
model itself computes when called as it was pretrained, on padded batches,
whether the probes (frozen) or the fine-tuner (trainable) read it.
"""

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_hf, waveforms

from speechbrain_wsm.models.lengths import relative_to_absolute
from speechbrain_wsm.models.ssl import SSLEncoder, load_ssl_encoder
from speechbrain_wsm.models.ssl_ctc import CTCFineTuner, TrainableSSLEncoder
from speechbrain_wsm.models.upstream import (
    SSLUpstream,
    hf_input_options,
    hf_model_inputs,
    load_ssl_model,
    load_upstream,
    source_kind,
)
from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder
from speechbrain_wsm.nnet.layer_stack import find_layer_stack

NAMES = ["hf", "hf-hubert", "hf-wavlm-large", "project"]
LENGTHS = [8000, 6400, 4800]


@pytest.fixture
def sources(tiny_ssl_sources):
    """The tiny SSL folders of the conftest, by name (:data:`NAMES`)."""
    return tiny_ssl_sources


def padded_batch():
    wav, rel = waveforms(LENGTHS, seed=2)
    return wav, relative_to_absolute(rel, wav.shape[1])


def reference(name, source, wav, samples):
    """``(output, hidden_states, frame_lengths)`` from the model's own forward."""
    if name == "project":
        model = load_pretrained_encoder(source)
        with torch.no_grad():
            output, states, frames = model(wav, samples)
        return output, list(states), frames
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    model = AutoModel.from_pretrained(source).eval()
    valid = (torch.arange(wav.shape[1]) < samples[:, None]).long()
    # the tiny models have layer-norm front ends: pretrained on standardised
    # audio with an attention mask, as Hugging Face's feature extractor makes it
    normed = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        list(wav.numpy()), list(valid.numpy())
    )
    inputs = torch.from_numpy(np.stack(normed)).float()
    with torch.no_grad():
        out = model(inputs, attention_mask=valid, output_hidden_states=True)
    frames = model._get_feat_extract_output_lengths(samples)
    return out.last_hidden_state, list(out.hidden_states), frames


@pytest.mark.parametrize("name", NAMES)
def test_upstream_computes_what_the_model_computes(name, sources):
    wav, samples = padded_batch()
    expected_out, expected_states, expected_frames = reference(
        name, sources[name], wav, samples
    )
    for frozen in (True, False):
        upstream = load_upstream(sources[name], frozen=frozen).eval()
        with torch.no_grad():
            states, frames = upstream(wav, samples)
            output, frames2 = upstream.encode(wav, samples)
        assert torch.equal(frames, expected_frames) and torch.equal(frames, frames2)
        assert len(states) == upstream.num_hidden_states == len(expected_states)
        assert states[0].shape[-1] == upstream.hidden_size
        for got, want in zip(states, expected_states, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(output, expected_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_padded_batch_matches_each_utterance_alone(name, sources):
    upstream = load_upstream(sources[name], frozen=True)
    wav, samples = padded_batch()
    states, frames = upstream(wav, samples)
    for i, n in enumerate(LENGTHS):
        alone, alone_frames = upstream(wav[i : i + 1, :n])
        assert int(alone_frames) == int(frames[i]) == alone[0].shape[1]
        for b, a in zip(states, alone, strict=True):
            torch.testing.assert_close(b[i, : frames[i]], a[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["hf", "project"])
def test_frozen_or_trainable_is_the_callers_choice(name, sources):
    wav, samples = padded_batch()
    frozen = load_upstream(sources[name], frozen=True).train()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())
    states, _ = frozen(wav.clone().requires_grad_(True), samples)
    assert not any(s.requires_grad for s in states)
    trainable = load_upstream(sources[name]).train()
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    output, frames = trainable.encode(wav, samples)
    output.sum().backward()
    layers = find_layer_stack(trainable.model).layers
    assert all(p.grad is not None for p in layers.parameters())
    # freezing later gives the same frozen module
    trainable.freeze()
    assert not trainable.training and not any(
        p.requires_grad for p in trainable.parameters()
    )


@pytest.mark.parametrize("name", ["hf", "project"])
def test_probe_and_finetuner_read_the_same_upstream(name, sources):
    """The Brain-facing modules convert relative lengths once and agree."""
    wav, rel = waveforms(LENGTHS, seed=2)
    samples = relative_to_absolute(rel, wav.shape[1])
    upstream = load_upstream(sources[name], frozen=True)
    states, frames = upstream(wav, samples)
    output, _ = upstream.encode(wav, samples)
    probe_states = load_ssl_encoder(sources[name])(wav, rel)
    assert all(torch.equal(a, b) for a, b in zip(probe_states, states, strict=True))
    normalize = name != "project"
    encoder = TrainableSSLEncoder(load_ssl_model(sources[name]), normalize).eval()
    with torch.no_grad():
        feats, pad = encoder(wav, rel)
        log_probs, out_lens = CTCFineTuner(encoder, 5).eval()(wav, rel)
    torch.testing.assert_close(feats, output, atol=1e-5, rtol=1e-5)
    assert torch.equal((~pad).sum(1), frames)
    assert torch.equal(torch.round(out_lens * log_probs.shape[1]).long(), frames)


def test_hf_input_is_prepared_as_the_feature_extractor_does(sources, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    wav, samples = padded_batch()
    valid = (torch.arange(wav.shape[1]) < samples[:, None]).long()
    inputs, kwargs = hf_model_inputs(wav, samples, normalize_wav=True)
    normed = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        list(wav.numpy()), list(valid.numpy())
    )
    torch.testing.assert_close(inputs, torch.from_numpy(np.stack(normed)).float())
    assert torch.equal(kwargs["attention_mask"], valid)
    raw, none = hf_model_inputs(wav + 1.0, samples, attention_mask=False)
    assert none == {} and not raw[valid == 0].any()
    assert torch.equal(raw[valid == 1], (wav + 1.0)[valid == 1])
    # what the checkpoint was pretrained on: layer-norm front end -> both on
    assert hf_input_options(sources["hf"]) == (True, True)
    group = save_tiny_hf(tmp_path / "group", "wav2vec2", feat_extract_norm="group")
    assert hf_input_options(group) == (False, False)
    (group / "preprocessor_config.json").write_text('{"do_normalize": true}')
    assert hf_input_options(group) == (True, False)
    upstream = load_upstream(group, frozen=True)
    assert (upstream.normalize_wav, upstream.attention_mask) == (True, False)


def test_sources_are_told_apart_and_bad_ones_named(sources, tmp_path):
    assert source_kind(sources["project"]) == "project"
    assert source_kind(sources["hf"]) == "hf"
    with pytest.raises(FileNotFoundError, match="nowhere.*not a folder"):
        source_kind(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither.*hyperparams.yaml.*config"):
        load_upstream(tmp_path)
    project = load_upstream(sources["project"])
    assert isinstance(project, SSLUpstream) and not project.is_hf
    assert project.fingerprint["kind"] == "project"
    hf = load_upstream(sources["hf"], hf_config_overrides={"layerdrop": 0.5})
    assert hf.is_hf and hf.model.config.layerdrop == 0.5
    assert {"normalize_wav", "attention_mask", "weights"} <= set(hf.fingerprint)


def test_ssl_encoder_freezes_the_upstream_it_is_given(sources):
    upstream = load_upstream(sources["project"])
    encoder = SSLEncoder(upstream)
    assert upstream.frozen and not any(p.requires_grad for p in encoder.parameters())
