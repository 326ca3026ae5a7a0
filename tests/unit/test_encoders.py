"""Encoders with injected mixers, the mixer registry and the YAML fragments."""

import itertools
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_wsm.nnet.encoders import LAYERS, MixerEncoder
from speechbrain_wsm.nnet.registry import MIXERS, build_mixer

ROOT = Path(__file__).resolve().parents[2]
D = 16
MIXER_KW = {"wsm": {"window_size": 3}}


def encoder(arch, mixer, causal=False, **kw):
    torch.manual_seed(0)
    return MixerEncoder(
        num_layers=2,
        d_model=D,
        nhead=2,
        d_ffn=32,
        mixer=mixer,
        arch=arch,
        causal=causal,
        kernel_size=3,
        mixer_kwargs=MIXER_KW.get(mixer),
        **kw,
    )


COMBOS = list(itertools.product(LAYERS, MIXERS, [False, True]))


@pytest.mark.parametrize("arch,mixer,causal", COMBOS)
def test_forward_backward_every_combination(arch, mixer, causal):
    enc = encoder(arch, mixer, causal).train()
    x = torch.randn(2, 9, D, requires_grad=True)
    mask = torch.arange(9)[None] >= torch.tensor([[9], [5]])
    out, hidden = enc(x, src_key_padding_mask=mask)
    assert out.shape == (2, 9, D) and len(hidden) == 3
    assert all(h.shape == (2, 9, D) for h in hidden)
    out[~mask].pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    no_grad = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("arch,mixer,causal", COMBOS)
def test_padded_batch_equals_each_utterance_alone(arch, mixer, causal):
    enc = encoder(arch, mixer, causal).eval()
    lengths = [12, 7, 3]
    x = torch.randn(3, 12, D)
    mask = torch.arange(12)[None] >= torch.tensor(lengths)[:, None]
    x = x.masked_fill(mask.unsqueeze(-1), 5.0)  # non-zero padding
    with torch.no_grad():
        out, hidden = enc(x, src_key_padding_mask=mask)
        for b, n in enumerate(lengths):
            alone, alone_hidden = enc(x[b : b + 1, :n])
            torch.testing.assert_close(out[b, :n], alone[0], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(
                hidden[1][b, :n], alone_hidden[1][0], atol=2e-5, rtol=1e-4
            )


@pytest.mark.parametrize("arch,mixer", list(itertools.product(LAYERS, MIXERS)))
def test_causal_encoder_ignores_the_future(arch, mixer):
    enc = encoder(arch, mixer, causal=True).eval()
    x = torch.randn(1, 14, D)
    x2 = x.clone()
    x2[:, 9:] = torch.randn(1, 5, D) * 3
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[0][:, :9], enc(x2)[0][:, :9])


@pytest.mark.parametrize("arch", list(LAYERS))
def test_noncausal_encoder_uses_the_future(arch):
    enc = encoder(arch, "wsm").eval()
    x = torch.randn(1, 14, D)
    x2 = x.clone()
    x2[:, 9:] = torch.randn(1, 5, D) * 3
    with torch.no_grad():
        assert not torch.allclose(enc(x)[0][:, :9], enc(x2)[0][:, :9])


def test_layerdrop_keeps_one_hidden_state_per_layer():
    enc = encoder("conformer", "sm", layerdrop=1.0).train()
    x = torch.randn(1, 5, D)
    out, hidden = enc(x)
    assert len(hidden) == 3 and torch.equal(hidden[-1], x)


def test_registry_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="relpos_mhsa, mhsa, sdpa, sm, wsm"):
        build_mixer("summary", D)
    with pytest.raises(ValueError, match="conformer, branchformer, transformer"):
        MixerEncoder(1, D, arch="conformor")
    with pytest.raises(TypeError, match="'sm'"):
        build_mixer("sm", D, window_size=3)  # SM has no window


def test_mhsa_and_sdpa_agree_given_the_same_weights():
    """Two implementations of one attention: same output on a padded batch."""
    torch.manual_seed(0)
    mhsa = build_mixer("mhsa", D, nhead=4).eval()
    sdpa = build_mixer("sdpa", D, nhead=4).eval()
    att = mhsa.attention.att
    sdpa.in_proj.weight.data.copy_(att.in_proj_weight)
    sdpa.in_proj.bias.data.copy_(att.in_proj_bias)
    sdpa.out_proj.load_state_dict(att.out_proj.state_dict())
    x = torch.randn(2, 6, D)
    mask = torch.arange(6)[None] >= torch.tensor([[6], [4]])
    a, b = mhsa(x, mask), sdpa(x, mask)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a[1, :4], b[1, :4], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mixer", ["relpos_mhsa", "mhsa", "sdpa"])
def test_attention_all_padding_row_is_finite(mixer):
    att = build_mixer(mixer, D, nhead=2)
    x = torch.randn(2, 4, D)
    mask = torch.tensor([[False] * 4, [True] * 4])
    assert torch.isfinite(att(x, mask)).all()


# -- YAML fragments -----------------------------------------------------------

FRAGMENTS = sorted((ROOT / "hparams" / "encoder").glob("*.yaml"))
SMALL = {"num_layers": 2, "d_model": D, "nhead": 2, "d_ffn": 32, "kernel_size": 3}


@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: p.stem)
def test_every_fragment_loads_and_runs(path):
    with open(path) as f:
        hp = load_hyperpyyaml(f, SMALL)
    enc = hp["encoder"]
    # the MHSA fragment's default is the strong baseline: relative positions
    # (and the streaming fragment's default mixer is streaming attention)
    expected = {"mhsa": "relpos_mhsa", "streaming": "sa"}.get(path.stem, path.stem)
    assert isinstance(enc, MixerEncoder) and enc.mixer_name == expected
    out, hidden = enc(torch.randn(1, 5, D))
    assert out.shape == (1, 5, D) and len(hidden) == 3


RECIPE = """
d_model: 32
window_size: 32
num_layers: 2
enc: !include:{fragment}
    d_model: !ref <d_model>
    window_size: !ref <window_size>
    num_layers: !ref <num_layers>
    nhead: 2
    d_ffn: 32
encoder: !ref <enc[encoder]>
"""


def _load_recipe(tmp_path, overrides):
    yaml = tmp_path / "recipe.yaml"
    yaml.write_text(RECIPE.format(fragment=ROOT / "hparams" / "encoder" / "wsm.yaml"))
    with open(yaml) as f:
        return load_hyperpyyaml(f, overrides)


def test_recipe_top_level_keys_reach_the_included_encoder(tmp_path):
    hp = _load_recipe(tmp_path, "window_size: 8\nd_model: 16")
    layer = hp["encoder"].layers[0]
    assert layer.mixer.window_size == 8 and hp["encoder"].d_model == 16
    assert hp["encoder"] is hp["enc"]["encoder"]  # one object, not a copy


def test_misspelt_override_fails(tmp_path):
    with pytest.raises(KeyError, match="windw_size"):
        _load_recipe(tmp_path, {"windw_size": 8})


@pytest.mark.parametrize("mixer", ["sm", "wsm"])
def test_fragment_sm_activation_reaches_the_mixer(mixer):
    with open(ROOT / "hparams" / "encoder" / f"{mixer}.yaml") as f:
        hp = load_hyperpyyaml(f, {**SMALL, "sm_activation": "swish"})
    mixer_layer = hp["encoder"].layers[0].mixer
    assert isinstance(mixer_layer.combiner_activation, torch.nn.SiLU)
    assert isinstance(mixer_layer.summary_proj.activation, torch.nn.SiLU)
