"""Hierarchical feature fusion and layer adapters (reconstruction, not from the paper).

What must hold whatever the paper's exact design: HFF trains nothing in the
encoder and runs no backward through it (no gradients, no saved activations);
adapters start as the identity, are what the taps read, and are (with the
fusion and the head) the only parameters a step changes; both kinds of
``ssl_source`` work through the one upstream.
"""

import contextlib

import pytest
import torch
from tiny_models import save_tiny_hf, save_tiny_wav2vec2, tiny_hf_model, waveforms

from speechbrain_wsm.models.fusion import (
    FeatureFusionCTC,
    HierarchicalFeatureFusion,
    build_fusion_model,
    fusion_model,
    resolve_taps,
)
from speechbrain_wsm.models.upstream import SSLUpstream
from speechbrain_wsm.nnet.adapters import BottleneckAdapter, add_layer_adapters

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = {"d_model": 16, "d_ffn": 32, "taps": 1, "num_blocks": 1}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    return {
        "hf": save_tiny_hf(root / "hf", "wav2vec2"),
        "project": save_tiny_wav2vec2(root / "project", mixer="wsm"),
    }


def ctc_step(model, opt, lengths=(8000, 6000)):
    """One CTC training step on random audio; returns the loss."""
    wav, lens = waveforms(list(lengths))
    log_probs, out_lens = model(wav, lens)
    frames = (out_lens * log_probs.shape[1]).round().long()
    targets = torch.randint(1, log_probs.shape[-1], (len(lengths), 3))
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, frames, torch.full((len(lengths),), 3)
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


@contextlib.contextmanager
def record_encoder_autograd(model):
    """Count tensors saved for backward while the upstream runs, and its outputs' grad_fn."""
    seen = {"saved": 0, "inside": False, "graph_outputs": 0}

    def pack(t):
        if seen["inside"]:
            seen["saved"] += 1
        return t

    def enter(module, args):
        seen["inside"] = True

    def leave(module, args, output):
        seen["inside"] = False
        states, _ = output
        seen["graph_outputs"] += sum(s.grad_fn is not None for s in states)

    handles = [
        model.upstream.register_forward_pre_hook(enter),
        model.upstream.register_forward_hook(leave),
    ]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield seen
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("kind", ["hf", "project"])
def test_hff_step_runs_no_backward_through_the_encoder(kind, sources):
    torch.manual_seed(0)
    model = build_fusion_model(sources[kind], 6, "hff", **SMALL).train()
    assert all(not p.requires_grad for p in model.upstream.parameters())
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-2)
    with record_encoder_autograd(model) as seen:
        loss = ctc_step(model, opt)
    assert torch.isfinite(loss)
    assert seen["saved"] == 0 and seen["graph_outputs"] == 0
    for name, p in model.upstream.named_parameters():
        assert p.grad is None, name
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(("reader.", "norm.", "head.")) for n in changed)
    assert any(n.startswith("reader.") for n in changed)
    assert model.taps == list(range(1, model.upstream.num_hidden_states))


@pytest.mark.parametrize("kind", ["hf", "project"])
def test_adapters_are_all_that_trains_in_the_encoder(kind, sources):
    torch.manual_seed(0)
    model = build_fusion_model(
        sources[kind], 6, "hff", adapters=True, adapter_dim=4, **SMALL
    ).train()
    encoder_before = {n: p.clone() for n, p in model.upstream.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-2)
    with record_encoder_autograd(model) as seen:
        for _ in range(2):
            ctc_step(model, opt)
    assert seen["saved"] > 0  # the backward crosses the layers' activations...
    for name, p in model.upstream.named_parameters():
        moved = not torch.equal(p, encoder_before[name])
        if ".adapter." in name:
            assert p.requires_grad
        else:  # ...but makes no gradient for the encoder's own weights
            assert not p.requires_grad and p.grad is None and not moved, name
    adapters = [n for n in encoder_before if ".adapter.up." in n]
    assert adapters and all(
        not torch.equal(dict(model.upstream.named_parameters())[n], encoder_before[n])
        for n in adapters
    )
    trainable = sum(p.numel() for p in model.upstream.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.encoder_parameters())


@pytest.mark.parametrize(
    "kind,large", [("wav2vec2", False), ("wavlm", False), ("hubert", True)]
)
def test_adapters_start_as_identity_and_the_taps_read_their_output(kind, large):
    wav, lens = waveforms([6000, 4000])
    samples = (lens * wav.shape[1]).round().long()
    plain = SSLUpstream(tiny_hf_model(kind, large), frozen=True)
    adapted = SSLUpstream(tiny_hf_model(kind, large), frozen=True)
    add_layer_adapters(adapted.model, bottleneck=4)
    ref, _ = plain(wav, samples)
    out, _ = adapted(wav, samples)
    for a, b in zip(ref, out, strict=True):
        torch.testing.assert_close(a, b)
    # Move the adapters: every layer's hidden state changes, and the last one
    # is the output the model returns (recorded after the adapter, not before).
    for module in adapted.modules():
        if isinstance(module, BottleneckAdapter):
            torch.nn.init.normal_(module.up.weight, std=0.5)
    out, _ = adapted(wav, samples)
    assert torch.equal(out[0], ref[0])
    assert all(not torch.allclose(a, b) for a, b in zip(ref[1:], out[1:], strict=True))
    last, _ = adapted.encode(wav, samples)
    if not large:  # post-LN: the output is the top layer's output
        torch.testing.assert_close(last, out[-1])


def test_padding_never_changes_a_valid_frame(sources):
    torch.manual_seed(0)
    model = build_fusion_model(
        sources["project"], 6, "hff", block="wsm", mixer_kwargs={"window_size": 4},
        d_model=16, d_ffn=32, taps=[1, -1],
    ).eval()  # fmt: skip
    wav, lens = waveforms([8000, 5000])
    with torch.no_grad():
        batch, out_lens = model(wav, lens)
        alone, _ = model(wav[1:, :5000], torch.ones(1))
    n = int((out_lens[1] * batch.shape[1]).round())
    assert n == alone.shape[1]
    torch.testing.assert_close(batch[1, :n], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["weighted_sum", "last_layer"])
def test_frozen_readers_train_only_their_head(method, sources):
    torch.manual_seed(0)
    model = build_fusion_model(sources["hf"], 6, method, **SMALL).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-2)
    with record_encoder_autograd(model) as seen:
        ctc_step(model, opt)
    assert seen["saved"] == 0
    assert all(p.grad is None for p in model.upstream.parameters())
    if method == "weighted_sum":
        assert model.reader["weights"].weights.grad is not None


def test_hierarchical_fusion_is_bottom_up():
    """f_K depends on every tap, and a lower tap reaches it only through the blocks above."""
    torch.manual_seed(0)
    hff = HierarchicalFeatureFusion([0, 2], d_in=4, d_model=8, d_ffn=8, dropout=0.0)
    states = [torch.randn(1, 3, 4, requires_grad=True) for _ in range(3)]
    hff(states).sum().backward()
    assert states[0].grad.abs().sum() > 0 and states[2].grad.abs().sum() > 0
    assert states[1].grad is None  # not tapped


def test_bad_options_name_themselves(sources):
    with pytest.raises(ValueError, match="taps"):
        resolve_taps(0, 4)
    with pytest.raises(ValueError, match="twice"):
        resolve_taps([4, -1], 4)
    up = SSLUpstream(tiny_hf_model(), frozen=True)
    with pytest.raises(ValueError, match="fusion method 'sum'"):
        FeatureFusionCTC(up, 5, "sum")
    with pytest.raises(ValueError, match="fusion block 'lstm'"):
        FeatureFusionCTC(up, 5, "hff", block="lstm")
    with pytest.raises(TypeError, match="d_fn"):  # no block built to refuse it
        FeatureFusionCTC(up, 5, "last_layer", num_blocks=0, d_fn=8)
    with pytest.raises(ValueError, match="bottleneck"):
        BottleneckAdapter(8, 0)
    model = fusion_model(tiny_hf_model(), 5, adapters=True, adapter_dim=2)
    with pytest.raises(ValueError, match="already have adapters"):
        add_layer_adapters(model.upstream.model)
