"""The fused path (issue 22, item 1): SM / WSM layers and MixerEncoder under
``torch.compile(fullgraph=True, dynamic=True)``, and the recipes' switch.

Kept small: graph capture, breaks and recompilations are checked with the
``aot_eager`` backend (dynamo and AOT autograd, the part that decides them,
without generating C++); one small layer goes through Inductor itself.
"""

import textwrap
from pathlib import Path

import pytest
import torch

from speechbrain_wsm.nnet.encoders import MixerEncoder
from speechbrain_wsm.nnet.registry import build_mixer

D = 16


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12)).item()


def run(model, x, mask, amp=False):
    """Output and gradients (input, parameters) of ``(y * g).sum()``."""
    x = x.clone().requires_grad_(True)
    for p in model.parameters():
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = model(x, mask)
    y = y[0] if isinstance(y, tuple) else y
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y.float() * g).sum().backward()
    return [y.detach().float(), x.grad] + [p.grad.clone() for p in model.parameters()]


def batches(lengths_list, T_list):
    torch.manual_seed(2)
    for lengths, T in zip(lengths_list, T_list, strict=True):
        mask = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
        yield torch.randn(len(lengths), T, D), mask


@pytest.mark.parametrize("mixer,kw", [("sm", {}), ("wsm", {"window_size": 4}),
                                      ("mhsa", {})])  # fmt: skip
def test_encoder_compiles_to_one_graph_for_every_length(mixer, kw):
    torch.manual_seed(0)
    enc = MixerEncoder(
        1, D, nhead=2, d_ffn=32, mixer=mixer, mixer_kwargs=kw, dropout=0.0
    ).train()
    torch._dynamo.reset()
    compiled = torch.compile(enc, backend="aot_eager", fullgraph=True, dynamic=True)
    # 28 frames: WSM's padded scan is 32 frames long, whole blocks of 16
    shapes = ([[13, 9, 5], 13], [[20, 20], 20], [[40, 7, 33], 40], [[28, 11], 28])
    for i, (x, mask) in enumerate(batches(*zip(*shapes, strict=True))):
        eager = run(enc, x, mask)
        # after the first batch, any recompilation (a new length, batch size
        # or padding) is an error
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            fused = run(compiled, x, mask)
        for a, b in zip(fused, eager, strict=True):
            assert relative(a, b) < 1e-5


class _Specialising(torch.nn.Module):
    """A mixer whose graph is specialised on the number of frames (as torch
    2.11's Inductor does to SpeechBrain's attention in a Conformer layer)."""

    def __init__(self, every):
        super().__init__()
        self.compiles_for_every_length = every
        self.lin = torch.nn.Linear(D, D)

    def forward(self, x, src_key_padding_mask=None):
        frames = len(list(range(x.shape[1])))  # a loop: specialised on the length
        return self.lin(x) * (1.0 + 0.0 * frames)


@pytest.mark.parametrize("every", [True, False])
def test_a_mixer_compiled_per_length_falls_back_to_eager_not_to_a_crash(every):
    """``compile_layers``: past Dynamo's recompile limit, a layer whose mixer
    says it does not compile once for every length runs eager (the run goes
    on, with the same outputs); a mixer that claims it does keeps
    ``fullgraph=True``, so such a specialisation fails loudly instead."""

    class Encoder(MixerEncoder):
        def make_mixer(self, *args):
            return _Specialising(every)

    torch.manual_seed(0)
    enc = Encoder(1, D, nhead=2, d_ffn=32, mixer="sm", dropout=0.0).eval()
    eager = [enc(torch.ones(1, T, D))[0] for T in (5, 6, 7, 8)]
    torch._dynamo.reset()
    enc.compile_layers(backend="aot_eager")
    with torch._dynamo.config.patch(recompile_limit=2):
        if every:
            with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
                [enc(torch.ones(1, T, D)) for T in (5, 6, 7, 8)]
        else:
            torch._dynamo.utils.counters.clear()
            outs = [enc(torch.ones(1, T, D))[0] for T in (5, 6, 7, 8)]
            for a, b in zip(outs, eager, strict=True):
                torch.testing.assert_close(a, b)
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


def test_speechbrain_attention_is_marked_as_compiled_per_length():
    for name in ("mhsa", "relpos_mhsa"):
        assert build_mixer(name, D, nhead=2).compiles_for_every_length is False
    for name, kw in (("sm", {}), ("wsm", {"window_size": 4}), ("sdpa", {})):
        mixer = build_mixer(name, D, nhead=2, **kw)
        assert getattr(mixer, "compiles_for_every_length", True)


@pytest.mark.parametrize("amp", [False, True])
def test_lean_wsm_layer_through_inductor_equals_eager(amp):
    """Through the backend the project compiles with (Inductor, no joint-graph
    merge; on CPU the blocked-scan operator)."""
    from speechbrain_wsm.nnet.lean_mixing import compile_backend

    torch.manual_seed(0)
    layer = build_mixer("wsm", D, nhead=2, window_size=4).train()
    compiled = torch.compile(
        layer, backend=compile_backend, fullgraph=True, dynamic=True
    )
    x, mask = next(batches([[12, 7]], [12]))
    eager, fused = run(layer, x, mask, amp), run(compiled, x, mask, amp)
    for a, b in zip(fused, eager, strict=True):
        assert relative(a, b) < (1e-2 if amp else 1e-5)


def test_cpu_graphs_draw_dropout_with_atens_generator():
    """On the CPU, ``compile_backend`` sends dropout to ATen's random kernels
    (``CPU_INDUCTOR_CONFIG``): Inductor's own per-element generator made a
    compiled Conformer layer 1.3x slower than eager. With ATen's, a compiled
    ``nn.Dropout`` draws eager's masks under one seed; Inductor's does not."""
    from torch._inductor.compile_fx import compile_fx

    from speechbrain_wsm.nnet.lean_mixing import compile_backend

    net = torch.nn.Sequential(
        torch.nn.Linear(D, D), torch.nn.Dropout(0.5), torch.nn.GELU(),
        torch.nn.Linear(D, D), torch.nn.Dropout(0.5),
    ).train()  # fmt: skip
    x = torch.randn(3, 17, D)
    torch.manual_seed(1)
    eager = net(x)
    outs = {}
    for label, backend in (("project", compile_backend), ("inductor", compile_fx)):
        torch._dynamo.reset()
        compiled = torch.compile(net, backend=backend, dynamic=True)
        torch.manual_seed(1)
        outs[label] = compiled(x)
    torch.testing.assert_close(outs["project"], eager)
    assert not torch.allclose(outs["inductor"], eager)  # what the setting changes


def test_only_cpu_graphs_get_the_cpu_settings(monkeypatch):
    import torch._inductor.compile_fx as inductor

    from speechbrain_wsm.nnet import lean_mixing

    seen = []
    monkeypatch.setattr(
        inductor,
        "compile_fx",
        lambda gm, ex, config_patches=None: seen.append(config_patches),
    )
    for device in ("cpu", "meta"):  # meta: a graph that does not run on the CPU
        lean_mixing.compile_backend(None, [torch.empty(2, device=device), 3])
    assert seen == [lean_mixing.CPU_INDUCTOR_CONFIG, None]


YAML = """\
enc: !new:speechbrain_wsm.nnet.encoders.MixerEncoder
    num_layers: 1
    d_model: 8
    nhead: 2
    d_ffn: 16
    mixer: wsm
    mixer_kwargs: {window_size: 4}
modules:
    encoder: !ref <enc>
"""


@pytest.mark.parametrize(
    "option,compiled",
    [(None, False), ("True", True), ("False", False), ("auto", False)],
)
def test_compile_encoder_option_needs_no_yaml_key(tmp_path, option, compiled):
    from speechbrain_wsm.recipe.experiment import load_hparams

    path = tmp_path / "h.yaml"
    path.write_text(textwrap.dedent(YAML))
    argv = [str(path), "--device=cpu"]
    if option is not None:
        argv.append(f"--compile_encoder={option}")
    hparams = load_hparams(argv)[0]
    enc = hparams["modules"]["encoder"]
    assert (enc.layers[0]._compiled_call_impl is not None) is compiled
    assert list(dict(enc.named_parameters())) == list(
        dict(hparams["enc"].named_parameters())
    )  # compiled in place: the same names, the same checkpoints


def test_compile_encoder_option_rejects_other_values(tmp_path):
    from speechbrain_wsm.errors import ConfigError
    from speechbrain_wsm.recipe.experiment import load_hparams

    path = tmp_path / "h.yaml"
    path.write_text(YAML)
    with pytest.raises(ConfigError, match="compile_encoder"):
        load_hparams([str(path), "--device=cpu", "--compile_encoder=maybe"])


def test_compile_encoder_refuses_mixed_precision_on_cpu(tmp_path):
    """Compiled layers under CPU autocast crash Inductor's backward at the
    second length (torch 2.11): refused before the run, not mid-training."""
    from speechbrain_wsm.errors import ConfigError
    from speechbrain_wsm.recipe.experiment import load_hparams

    path = tmp_path / "h.yaml"
    path.write_text(YAML)
    argv = [str(path), "--device=cpu", "--compile_encoder=True"]
    with pytest.raises(ConfigError, match="precision=bf16 on CPU"):
        load_hparams([*argv, "--precision=bf16"])
    enc = load_hparams([*argv, "--precision=fp32"])[0]["modules"]["encoder"]
    assert enc.layers[0]._compiled_call_impl is not None


def test_a_value_a_constructor_refuses_is_a_one_line_config_error(tmp_path):
    """A YAML value or override that an object of the YAML refuses (here the
    streaming CTC recipe's --fbank_norm) is a ConfigError, not a traceback."""
    from speechbrain_wsm.errors import ConfigError
    from speechbrain_wsm.recipe.experiment import load_hparams

    yaml = (
        Path(__file__).parents[2]
        / "recipes/LibriSpeech/ASR/CTC/hparams/conformer_streaming_wsm.yaml"
    )
    argv = [str(yaml), "--device=cpu", f"--data_folder={tmp_path}",
            f"--output_folder={tmp_path}", "--num_layers=1", "--fbank_norm=utterance"]  # fmt: skip
    with pytest.raises(ConfigError, match="fbank_norm / norm must be"):
        load_hparams(argv)
