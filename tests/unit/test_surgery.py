"""Surgery on pretrained SSL models: what trains, what stays, padding, memory.

Every property is checked on tiny Hugging Face wav2vec 2.0 / HuBERT / WavLM
models saved to a local folder and loaded back with ``from_pretrained`` (base
post-LayerNorm and large pre-LayerNorm layers, and a ``ForCTC`` wrapper), and
on this project's tiny pretrained wav2vec 2.0 encoder (a pretraining output
folder).

Padding: the tiny HF configs use ``feat_extract_norm="layer"`` (per-frame
LayerNorm in the CNN front end, as the large checkpoints have), so a padded
batch can equal per-utterance outputs at the model's own input (waveform +
``attention_mask``). The base checkpoints' ``"group"`` front end normalises
over time, padding included, so there invariance can only hold from the
encoder on: :func:`test_padding_invariance_of_group_norm_models_at_the_encoder`
feeds hidden states and the frame mask to ``model.encoder`` directly.
"""

import copy

import pytest
import torch
from tiny_models import (
    save_tiny_hf,
    save_tiny_wav2vec2,
    tiny_hf_model,
    waveforms,
)

from speechbrain_wsm.models.lengths import relative_to_absolute
from speechbrain_wsm.models.surgery import (
    MixerAttention,
    apply_finetuning_mode,
    count_parameters,
    replace_attention,
    skip_frozen_activations,
    surgery_record,
    train_only_attention,
    trainable_parameter_names,
)
from speechbrain_wsm.models.upstream.hf import hf_padding_mask
from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.nnet.layer_stack import find_layer_stack

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding")

MODELS = [
    "wav2vec2-base",
    "wav2vec2-large",
    "hubert-base",
    "hubert-large",
    "wavlm-base",
    "wavlm-large",
    "wav2vec2-ctc",
    "project",
]
LENGTHS = [8000, 5600]  # samples: 0.5 s and 0.35 s


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Every tiny pretrained model, saved once to its own folder."""
    root = tmp_path_factory.mktemp("ssl")
    out = {}
    for name in MODELS:
        if name == "project":
            out[name] = save_tiny_wav2vec2(root / name)
            continue
        kind, variant = name.split("-")
        out[name] = save_tiny_hf(
            root / name, kind, large=variant == "large", ctc=variant == "ctc"
        )
    return out


def load(name, folders):
    """Load a saved tiny model (eval mode)."""
    if name == "project":
        from speechbrain_wsm.models.wav2vec2 import load_pretrained_encoder

        return load_pretrained_encoder(folders[name])
    import transformers

    kind, variant = name.split("-")
    prefix = {"wav2vec2": "Wav2Vec2", "hubert": "Hubert", "wavlm": "WavLM"}[kind]
    suffix = "ForCTC" if variant == "ctc" else "Model"
    cls = getattr(transformers, prefix + suffix)
    return cls.from_pretrained(folders[name]).eval()


def run(model, wav, rel):
    """``(last output, list of hidden states)``: entry ``i`` is layer ``i``'s input."""
    n = relative_to_absolute(rel, wav.shape[1])
    if hasattr(model, "config"):
        mask = (torch.arange(wav.shape[1]) < n[:, None]).long()
        out = model(wav, attention_mask=mask, output_hidden_states=True)
        last = out.logits if hasattr(out, "logits") else out.last_hidden_state
        return last, list(out.hidden_states)
    last, hidden_states, _ = model(wav, n)
    return last, hidden_states


def frames(model, samples):
    """Valid output frames for ``samples`` input samples."""
    n = torch.tensor(samples)
    if hasattr(model, "config"):
        return model.base_model._get_feat_extract_output_lengths(n).tolist()
    return model.latent_extractor.output_lengths(n).tolist()


@pytest.mark.parametrize("name", MODELS)
def test_only_new_blocks_train_and_frozen_parameters_get_no_gradient(name, folders):
    model = load(name, folders).train()
    frozen_before = {
        n: p.detach().clone() for n, p in model.named_parameters()
    }  # every parameter, for the after-step comparison
    names = replace_attention(model, [-2, -1], "wsm", window_size=4)
    stack = find_layer_stack(model)
    top = len(stack.layers) - 1
    assert names == [stack.attention_name(top - 1), stack.attention_name(top)]
    trainable = set(trainable_parameter_names(model))
    assert trainable and all(
        any(t.startswith(n + ".") for n in names) for t in trainable
    )
    assert count_parameters(model) == sum(
        p.numel()
        for n, p in model.named_parameters()
        if any(n.startswith(m + ".") for m in names) and "rel_attn_embed" not in n
    )
    wav, rel = waveforms(LENGTHS)
    last, _ = run(model, wav, rel)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    (last**2).mean().backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen_before and not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), n


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("freeze_others", [True, False])
def test_hidden_states_below_the_replaced_layers_are_unchanged(
    name, freeze_others, folders
):
    """Bit-for-bit equal up to the first replaced layer's input.

    The reference has the same trainable flags: for a non-contiguous 3-D
    input, PyTorch's ``linear`` takes another (as accurate) kernel when the
    weight does not require grad, and WavLM's attention feeds it transposed
    inputs, so freezing alone moves WavLM's outputs by float rounding.
    """
    original = load(name, folders)
    model = copy.deepcopy(original)
    replace_attention(
        model, [-2, -1], "wsm", freeze_others=freeze_others, window_size=4
    )
    if freeze_others:
        original.requires_grad_(False)
    num_layers = len(find_layer_stack(model).layers)
    first = num_layers - 2
    wav, rel = waveforms(LENGTHS)
    _, before = run(original, wav, rel)
    _, after = run(model, wav, rel)
    assert len(before) == len(after) == num_layers + 1
    for i in range(first + 1):  # the inputs of every layer up to the first replaced
        assert torch.equal(before[i], after[i]), i
    assert not torch.allclose(before[first + 1], after[first + 1])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mixer", ["wsm", "sm"])
def test_padded_batch_equals_per_utterance_outputs(name, mixer, folders):
    model = load(name, folders)
    kwargs = {"window_size": 4} if mixer == "wsm" else {}
    replace_attention(model, [-2, -1], mixer, **kwargs)
    wav, rel = waveforms(LENGTHS)
    with torch.no_grad():
        batch, _ = run(model, wav, rel)
        valid = frames(model, LENGTHS)
        for i, n in enumerate(LENGTHS):
            alone, _ = run(model, wav[i : i + 1, :n], torch.ones(1))
            T = valid[i]
            assert alone.shape[1] == T
            torch.testing.assert_close(batch[i, :T], alone[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_padding_invariance_of_group_norm_models_at_the_encoder(kind):
    model = tiny_hf_model(kind, feat_extract_norm="group")
    replace_attention(model, [-1], "wsm", window_size=4)
    torch.manual_seed(1)
    hidden = torch.randn(2, 30, 32)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 18:] = False
    with torch.no_grad():
        batch = model.encoder(hidden.clone(), attention_mask=mask).last_hidden_state
        alone = model.encoder(hidden[1:, :18].clone()).last_hidden_state
    torch.testing.assert_close(batch[1, :18], alone[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("large", [False, True])
def test_eager_and_sdpa_masks_give_the_same_outputs(large):
    models = {}
    for impl in ("eager", "sdpa"):
        model = tiny_hf_model("wav2vec2", large, attn_implementation=impl)
        torch.manual_seed(3)
        replace_attention(model, [-1], "wsm", window_size=4)
        models[impl] = model
    wav, rel = waveforms(LENGTHS)
    outs = [run(m, wav, rel)[0] for m in models.values()]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)


def test_hf_padding_mask_reads_every_mask_form():
    from transformers.masking_utils import create_bidirectional_mask

    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False
    x = torch.zeros(2, 6, 8)
    for impl in ("eager", "sdpa"):
        config = tiny_hf_model().config
        config._attn_implementation = impl
        mask = create_bidirectional_mask(
            config=config, inputs_embeds=x, attention_mask=valid
        )
        assert torch.equal(hf_padding_mask(mask, (2, 6)), ~valid), impl
    assert torch.equal(hf_padding_mask(valid.long(), (2, 6)), ~valid)
    assert hf_padding_mask(None, (2, 6)) is None
    with pytest.raises(ValueError, match="does not match"):
        hf_padding_mask(valid, (2, 5))
    with pytest.raises(ValueError, match="shape"):
        hf_padding_mask(torch.ones(2, 6, 6), (2, 6))


@pytest.mark.parametrize("large", [False, True])
def test_wavlm_position_bias_survives_replacing_the_first_layer(large):
    original = tiny_hf_model("wavlm", large)
    model = copy.deepcopy(original)
    replace_attention(model, [0, 2], "wsm", window_size=4)
    replace_attention(model, [0], "sm")  # replacing a replaced layer keeps the bias
    seen = {}

    def grab(key):
        def hook(module, args, kwargs):
            seen.setdefault(key, []).append(kwargs["position_bias"])

        return hook

    for key, m in (("original", original), ("replaced", model)):
        for i in (1, 3):
            m.encoder.layers[i].register_forward_pre_hook(grab(key), with_kwargs=True)
    wav, rel = waveforms(LENGTHS)
    run(original, wav, rel)
    run(model, wav, rel)
    assert len(seen["original"]) == len(seen["replaced"]) == 2
    for a, b in zip(seen["original"], seen["replaced"], strict=True):
        assert a is not None and torch.equal(a, b)
    assert not any(
        p.requires_grad
        for p in model.encoder.layers[0].attention.relative_bias.parameters()
    )


def test_forctc_wrapper_and_keep_trainable(folders):
    model = load("wav2vec2-ctc", folders)
    names = replace_attention(
        model, [-1], "wsm", keep_trainable=["lm_head"], window_size=4
    )
    assert names == ["wav2vec2.encoder.layers.3.attention"]
    assert isinstance(model.wav2vec2.encoder.layers[3].attention, MixerAttention)
    roots = {n.split(".")[0] for n in trainable_parameter_names(model)}
    assert roots == {"wav2vec2", "lm_head"}
    assert surgery_record(model)[0]["layers"] == [3]


def test_freeze_others_false_leaves_the_rest_trainable():
    model = tiny_hf_model()
    total = count_parameters(model)
    replace_attention(model, [-1], "sm", freeze_others=False)
    assert count_parameters(model) > total - count_parameters(model.encoder.layers[3])
    assert model.encoder.layers[0].attention.q_proj.weight.requires_grad


def saved_bytes(model, wav, rel):
    """Bytes autograd keeps for backward during one forward pass."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        last, _ = run(model, wav, rel)
    return total, last


@pytest.mark.parametrize("name", ["wav2vec2-base", "wavlm-large", "project"])
def test_frozen_layers_store_no_activations(name, folders):
    """Autograd keeps less for backward the more layers are frozen.

    Then the hooks' own effect: with an input that requires grad (as Hugging
    Face's feature encoder makes its input when its flag says trainable),
    plain autograd records the whole frozen part; with the hooks it records
    nothing there, and the gradients are the same.
    """
    wav, rel = waveforms(LENGTHS)
    stored = {}
    for n in (1, 2, 3):
        model = load(name, folders).train()
        torch.manual_seed(0)
        replace_attention(model, list(range(-n, 0)), "wsm", window_size=4)
        stored[n], _ = saved_bytes(model, wav, rel)
    assert stored[1] < stored[2] < stored[3], stored

    grads, kept = [], []
    for hooks in (True, False):
        if not hooks:
            model._wsm_no_grad_prefix.remove()
        model.zero_grad(set_to_none=True)
        size, last = saved_bytes(model, wav.clone().requires_grad_(True), rel)
        last.square().mean().backward()
        kept.append(size)
        grads.append([p.grad for p in model.parameters() if p.requires_grad])
    assert kept[0] == stored[3] and kept[1] > 1.5 * kept[0], kept
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_no_grad_prefix_restores_autograd_after_an_error():
    enc = MixerEncoder(3, 16, nhead=2, d_ffn=32)
    replace_attention(enc, [-1], "wsm", window_size=4)
    with pytest.raises(ValueError):
        enc(torch.randn(2, 5, 8))  # wrong feature size, raised inside the hooks
    assert torch.is_grad_enabled()
    with torch.no_grad():
        enc(torch.randn(2, 5, 16))
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_trainability_changes_after_installation_are_honoured():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    net[0].requires_grad_(False)
    skip_frozen_activations(net)
    net[0].requires_grad_(True)
    net(torch.randn(3, 4)).sum().backward()
    assert net[0].weight.grad is not None


def test_finetuning_modes_train_what_they_say():
    counts = {}
    for mode in ("full", "mhsa_top", "sm", "wsm"):
        model = tiny_hf_model()
        names = apply_finetuning_mode(model, mode, num_layers=2, window_size=4)
        counts[mode] = count_parameters(model)
        trainable = trainable_parameter_names(model)
        if mode == "full":
            assert names == [""]
            assert not any(n.startswith("feature_extractor") for n in trainable)
            assert any(n.startswith("feature_projection") for n in trainable)
        elif mode == "mhsa_top":
            assert names == ["encoder.layers.2.attention", "encoder.layers.3.attention"]
            assert all(
                n.split(".attention.")[0] in names[0] + names[1] for n in trainable
            )
        else:
            blocks = [model.encoder.layers[i].attention.mixer for i in (2, 3)]
            assert all(
                type(b)
                .__name__.lower()
                .startswith("windowed" if mode == "wsm" else "summary")
                for b in blocks
            )
    assert counts["full"] > counts["mhsa_top"] > 0
    assert counts["wsm"] > counts["sm"] > 0


def test_errors_name_the_problem():
    model = tiny_hf_model()
    with pytest.raises(ValueError, match="out of range"):
        replace_attention(model, [4])
    with pytest.raises(ValueError, match="twice"):
        replace_attention(model, [-1, 3])
    with pytest.raises(ValueError, match="unknown mixer"):
        replace_attention(model, [-1], "attention")
    with pytest.raises(ValueError, match="no supported encoder"):
        replace_attention(torch.nn.Linear(2, 2), [-1])
    with pytest.raises(ValueError, match="unknown fine-tuning mode"):
        apply_finetuning_mode(model, "lora")
    two = torch.nn.ModuleList([MixerEncoder(1, 8, 2, 16), MixerEncoder(1, 8, 2, 16)])
    with pytest.raises(ValueError, match="holds 2 encoders"):
        train_only_attention(two, [-1])
