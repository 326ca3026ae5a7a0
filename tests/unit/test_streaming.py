"""Streaming mixers and encoder: SA equals MAA, measured look-ahead, streaming
equals offline with bounded state."""

import pytest
import torch

from speechbrain_wsm.latency import lookahead_frames
from speechbrain_wsm.nnet.registry import build_mixer
from speechbrain_wsm.nnet.streaming import (
    ChunkedAttention,
    MaskedAttention,
    StreamingAttention,
    StreamingWSM,
    banded_attention,
)
from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder

D = 16


def _pad_mask(lengths, T):
    return torch.arange(T) >= torch.tensor(lengths)[:, None]


@pytest.mark.parametrize(("L", "R", "block"), [(4, 2, None), (0, 0, None), (7, 3, 2)])
def test_sa_equals_maa_with_padding(L, R, block):
    torch.manual_seed(0)
    sa = StreamingAttention(D, nhead=2, left_context=L, right_context=R, block=block)
    maa = MaskedAttention(D, nhead=2, left_context=L, right_context=R)
    maa.load_state_dict(sa.state_dict())
    fused = MaskedAttention(D, nhead=2, left_context=L, right_context=R, fused=True)
    fused.load_state_dict(sa.state_dict())
    sa.eval(), maa.eval(), fused.eval()
    x = torch.randn(3, 23, D, requires_grad=True)
    pad = _pad_mask([23, 15, 2], 23)
    y_sa, y_maa = sa(x, pad), maa(x, pad)
    assert torch.isfinite(y_sa).all()
    torch.testing.assert_close(y_sa, y_maa, atol=1e-5, rtol=1e-5)  # padded rows too
    torch.testing.assert_close(fused(x, pad), y_maa, atol=1e-5, rtol=1e-5)
    (g_sa,) = torch.autograd.grad(y_sa[~pad].square().sum(), x)
    (g_maa,) = torch.autograd.grad(y_maa[~pad].square().sum(), x)
    torch.testing.assert_close(g_sa, g_maa, atol=1e-5, rtol=1e-4)
    # padding never reaches a valid frame: the 2nd utterance alone
    torch.testing.assert_close(y_sa[1, :15], sa(x[1:2, :15])[0], atol=1e-5, rtol=1e-5)


def test_banded_attention_scores_are_linear_in_length(monkeypatch):
    """The score tensor of SA holds T * (block + L + R) entries, not T^2."""
    sizes, softmax = [], torch.softmax

    def spy(x, dim):
        sizes.append(x.numel())
        return softmax(x, dim=dim)

    monkeypatch.setattr(torch, "softmax", spy)
    q = torch.randn(1, 1, 300, 4, requires_grad=True)
    banded_attention(q, q, q, 8, 2)
    assert sizes and max(sizes) <= (300 + 11) * (11 + 10)  # block 11, L + R 10
    assert max(sizes) < 300 * 300 / 10


def test_causal_flag_contradicting_lookahead_is_refused():
    with pytest.raises(ValueError, match="right_context"):
        build_mixer("sa", D, causal=True, left_context=4, right_context=2)
    with pytest.raises(ValueError, match="left_context"):
        StreamingAttention(D, left_context=None)
    with pytest.raises(ValueError, match="two-stream"):
        StreamingEncoder(2, D, nhead=2, d_ffn=32, mixer="maa", low_latency=True)
    with pytest.raises(ValueError, match="mixer must be one of"):
        StreamingEncoder(2, D, nhead=2, d_ffn=32, mixer="mhsa")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low_latency": False},  # the stacked form would add R per layer
        {"arch": "branchformer"},
        {"right_context": 0},
        {"kernel_size": 1},  # fewer taps than the look-ahead
        {"conv_lookahead": "yes"},  # not a bool
    ],
)
def test_conv_lookahead_is_refused_where_it_cannot_hold_the_lookahead(kwargs):
    args = dict(mixer="sa", low_latency=True, left_context=4, right_context=2)
    args["conv_lookahead"] = True
    with pytest.raises(ValueError, match="conv_lookahead"):
        StreamingEncoder(2, D, nhead=2, d_ffn=32, **{**args, **kwargs})


def _encoder(
    mixer, low_latency=False, layers=4, R=2, L=8, arch="conformer", mixer_kwargs=None
):
    """``low_latency="conv"``: LLSA with look-ahead convolutions."""
    torch.manual_seed(1)
    return StreamingEncoder(
        layers,
        D,
        nhead=2,
        d_ffn=32,
        mixer=mixer,
        arch=arch,
        kernel_size=3,
        left_context=L,
        right_context=R,
        low_latency=bool(low_latency),
        conv_lookahead=low_latency == "conv",
        dropout=0.0,
        mixer_kwargs=mixer_kwargs,
    ).eval()


def _measured(enc):
    return lookahead_frames(lambda x: enc(x)[0], D, frames=48, probes=24)


@pytest.mark.parametrize(
    ("mixer", "low_latency", "expected"),
    [
        ("maa", False, 8),
        ("sa", False, 8),
        ("swsm", False, 8),
        ("sa", True, 2),  # LLSA
        ("swsm", True, 2),  # low-latency streaming WSM
        ("sa", "conv", 2),  # LLSA, convolutions looking ahead too
        ("swsm", "conv", 2),
    ],
)
def test_measured_lookahead_four_layers(mixer, low_latency, expected):
    enc = _encoder(mixer, low_latency)
    assert enc.lookahead == expected
    assert _measured(enc) == expected
    # SpeechBrain's finite perturbation (infer_dependency_matrix) agrees
    fn = lambda x: enc(x)[0]  # noqa: E731
    with torch.no_grad():
        assert lookahead_frames(fn, D, 48, probes=24, method="perturb") == expected


def test_jacobian_sees_the_far_edge_of_a_deep_band():
    """12 layers of MAA, R = 1: the influence of the farthest frame crosses 12
    attention weights; the measure must still find 12."""
    enc = _encoder("maa", layers=12, R=1, L=16, arch="transformer")
    assert _measured(enc) == 12  # the finite perturbation finds 11 here


def test_chunked_lookahead_does_not_accumulate():
    torch.manual_seed(0)
    layers = [ChunkedAttention(D, nhead=2, chunk_size=4).eval() for _ in range(4)]

    def fn(x):
        for layer in layers:
            x = x + layer(x)
        return x

    assert lookahead_frames(fn, D, frames=32, probes=32) == 3


def test_acausal_attention_is_unbounded():
    att = build_mixer("sdpa", D, nhead=2).eval()
    assert lookahead_frames(att, D, frames=16, probes=4, max_frames=32) is None


def _state_numel(state):
    from speechbrain_wsm.nnet.streaming_cache import state_tensors

    return sum(t.numel() for t in state_tensors(state))


STREAM_CASES = [
    ("sa", False),
    ("sa", True),
    ("sa", "conv"),
    ("swsm", False),
    ("swsm", True),
    ("swsm", "conv"),
    ("maa", False),
]


@pytest.mark.parametrize(("mixer", "low_latency"), STREAM_CASES)
def test_stream_equals_offline(mixer, low_latency):
    enc = _encoder(mixer, low_latency, layers=3, R=2, L=5)
    T = 70
    x = torch.randn(2, T, D)
    with torch.no_grad():
        full, _ = enc(x)
        empty = _state_numel(enc.init_stream(2))
        for chunk in (1, 2, 3, 7, 16, 64):
            outs, state, fed = [], None, 0
            for i in range(0, T, chunk):
                y, state = enc.stream(x[:, i : i + chunk], state)
                fed += x[:, i : i + chunk].shape[1]
                outs.append(y)
                # delayed by exactly the look-ahead
                assert sum(o.shape[1] for o in outs) == max(0, fed - enc.lookahead)
                # the caches have one size, whatever the chunk and the past
                assert _state_numel(state) == empty
            y, state = enc.stream(None, state, final=True)
            outs.append(y)
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("kernel_size", "R"), [(2, 2), (4, 1)])
def test_conv_lookahead_streams_exactly_at_the_edges_of_its_taps(kernel_size, R):
    """As many look-ahead taps as causal ones (the cache's oldest frame is
    read), and a single one."""
    torch.manual_seed(1)
    enc = StreamingEncoder(2, D, nhead=2, d_ffn=32, mixer="swsm", dropout=0.0,
                           kernel_size=kernel_size, left_context=3, right_context=R,
                           low_latency=True, conv_lookahead=True).eval()  # fmt: skip
    assert enc.layers[0].conv.conv.kernel_size == (kernel_size + R,)
    x = torch.randn(1, 23, D)
    with torch.no_grad():
        full, _ = enc(x)
        for chunk in (1, 2, 5):
            got = _stream_all(enc, x, chunk)
            torch.testing.assert_close(got, full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["transformer", "branchformer"])
@pytest.mark.parametrize(("mixer", "low_latency"), [("sa", True), ("swsm", False)])
def test_stream_equals_offline_other_blocks(arch, mixer, low_latency):
    enc = _encoder(mixer, low_latency, layers=2, R=3, L=4, arch=arch)
    x = torch.randn(1, 37, D)
    with torch.no_grad():
        full, _ = enc(x)
        outs, state = [], None
        for i in range(0, 37, 5):
            y, state = enc.stream(x[:, i : i + 5], state)
            outs.append(y)
        outs.append(enc.stream(None, state, final=True)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "mixer_kwargs",
    [
        {},  # fused: one stack of projections, LayerNorms folded into the combiner
        {"local_proj_hid_dims": [16, 16]},  # MLPs of unequal depth: not fused
        {"mode": "fast"},
        {"mode": "lite"},
        {"layernorm": False},
    ],
)
def test_streaming_wsm_step_equals_offline_for_every_mixer_form(mixer_kwargs):
    """The incremental step's fused WSM projections and combiner (and their
    fallbacks) give the offline forward, with trained-looking LayerNorms:
    scales and shifts away from 1 and 0, so folding them is checked."""
    from speechbrain_wsm.nnet.streaming_cache import step_plan

    enc = _encoder("swsm", True, layers=2, R=2, L=5, mixer_kwargs=mixer_kwargs)
    plan = step_plan(enc)
    mode = mixer_kwargs.get("mode", "full")
    fused_proj = mode == "full" and "local_proj_hid_dims" not in mixer_kwargs
    fused_comb = mixer_kwargs.get("layernorm", True)
    assert bool(plan.fused_proj) == fused_proj  # the path under test is taken
    assert bool(plan.fused_comb) == fused_comb
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)
        x = torch.randn(2, 41, D)
        full, _ = enc(x)
        for chunk in (1, 4):
            outs, state = [], None
            for i in range(0, 41, chunk):
                y, state = enc.stream(x[:, i : i + chunk], state)
                outs.append(y)
            outs.append(enc.stream(None, state, final=True)[0])
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("mixer", "low_latency"), STREAM_CASES)
def test_stream_equals_padded_batch(mixer, low_latency):
    """Each utterance of a padded batch, streamed alone (and shorter than the
    look-ahead), gives its valid frames of the batched offline forward."""
    enc = _encoder(mixer, low_latency, layers=3, R=2, L=5)
    lengths = [30, 17, 4]
    x = torch.randn(3, 30, D)
    with torch.no_grad():
        full, _ = enc(x, _pad_mask(lengths, 30))
        for b, n in enumerate(lengths):
            y1, state = enc.stream(x[b : b + 1, : n // 2])
            y2, _ = enc.stream(x[b : b + 1, n // 2 : n], state, final=True)
            got = torch.cat([y1, y2], 1)[0]
            torch.testing.assert_close(got, full[b, :n], atol=2e-5, rtol=1e-4)


def _chunk_flops(enc, n, warm=60):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, warm + n, D)
    with torch.no_grad():
        _, state = enc.stream(x[:, :warm])
        with FlopCounterMode(display=False) as counter:
            enc.stream(x[:, warm:], state)
    return counter.get_total_flops(), state


@pytest.mark.parametrize(("mixer", "low_latency"), STREAM_CASES)
def test_chunk_work_is_constant_and_proportional(mixer, low_latency):
    """FLOPs (torch.utils.flop_counter) of a chunk once the caches are full:
    the same after 60 or 600 frames of past, and proportional to the chunk's
    new frames; the state keeps its size."""
    enc = _encoder(mixer, low_latency, layers=3, R=2, L=5)
    f4, s_short = _chunk_flops(enc, 4)
    f4_late, s_long = _chunk_flops(enc, 4, warm=600)
    f8, _ = _chunk_flops(enc, 8)
    f32, _ = _chunk_flops(enc, 32)
    assert f4 > 0 and f4 == f4_late
    assert f8 == 2 * f4 and f32 == 8 * f4
    assert _state_numel(s_short) == _state_numel(s_long)


def _stream_all(enc, x, chunk, **kwargs):
    outs, state = [], None
    for i in range(0, x.shape[1], chunk):
        y, state = enc.stream(x[:, i : i + chunk], state, **kwargs)
        outs.append(y)
    outs.append(enc.stream(None, state, final=True)[0])
    return torch.cat(outs, 1)


@pytest.mark.parametrize(("mixer", "low_latency"), [("sa", True), ("swsm", True)])
def test_int8_stream_is_opt_in_and_close(mixer, low_latency):
    """int8 linear layers only when asked for, close to the float output; the
    float stream stays exact after the int8 one, and after a weight change
    (the prepared linear layers follow the parameters)."""
    enc = _encoder(mixer, low_latency, layers=2, R=2, L=5)
    x = torch.randn(1, 40, D)
    with torch.no_grad():
        full, _ = enc(x)
        q = _stream_all(enc, x, 4, int8=True)
        assert q.shape == full.shape and not torch.equal(q, full)
        assert (q - full).abs().max() < 0.2  # outputs after a LayerNorm: O(1)
        torch.testing.assert_close(_stream_all(enc, x, 4), full, atol=2e-5, rtol=1e-4)
        for p in enc.parameters():
            p.mul_(0.9)
        full, _ = enc(x)
        torch.testing.assert_close(_stream_all(enc, x, 4), full, atol=2e-5, rtol=1e-4)
        assert (_stream_all(enc, x, 4, int8=True) - full).abs().max() < 0.2


def test_stream_refuses_bad_input():
    enc = _encoder("sa", True, layers=2, R=1, L=3)
    x = torch.randn(1, 10, D)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"chunk must be \[batch, frame, 16\]"):
            enc.stream(torch.randn(1, 10, D + 1))
        with pytest.raises(ValueError, match="float tensor"):
            enc.stream(torch.ones(1, 10, D, dtype=torch.long))
        _, state = enc.stream(x)
        with pytest.raises(ValueError, match="batch 2"):
            enc.stream(torch.randn(2, 3, D), state)
        _, state = enc.stream(None, state, final=True)
        with pytest.raises(ValueError, match="finished"):
            enc.stream(x, state)
        with pytest.raises(ValueError, match="before any frame"):
            enc.stream(None, final=True)
        enc.train()
        with pytest.raises(ValueError, match="eval mode"):
            enc.stream(x)


def test_low_latency_padding_and_hidden_states():
    enc = _encoder("sa", True, layers=2, R=1, L=4, arch="transformer")
    x = torch.randn(2, 12, D)
    pad = _pad_mask([12, 7], 12)
    with torch.no_grad():
        out, hidden = enc(x, pad)
        alone, _ = enc(x[1:, :7])
    assert len(hidden) == 3 and hidden[0].shape == x.shape
    torch.testing.assert_close(out[1, :7], alone[0], atol=1e-5, rtol=1e-5)


def test_streaming_wsm_equals_wsm_window_when_no_lookahead():
    """right_context 0: a causal WSM with window L + 1 (the existing mixer)."""
    torch.manual_seed(0)
    swsm = StreamingWSM(D, nhead=2, left_context=4, right_context=0).eval()
    wsm = build_mixer("wsm", D, nhead=2, window_size=5, causal=True).eval()
    wsm.load_state_dict(swsm.state_dict())
    x = torch.randn(2, 17, D)
    pad = _pad_mask([17, 9], 17)
    torch.testing.assert_close(swsm(x, pad), wsm(x, pad), atol=1e-5, rtol=1e-5)


def test_training_step_runs_and_backpropagates():
    enc = _encoder("swsm", True, layers=2, R=1, L=4)
    enc.train()
    x = torch.randn(2, 10, D)
    out, _ = enc(x, _pad_mask([10, 6], 10))
    out[0].sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("low_latency", [False, True])
def test_whole_model_streams_from_audio(low_latency):
    """Front end included: audio chunks of any size give the offline output."""
    from speechbrain_wsm.models.wav2vec2 import ContextNetwork, Wav2Vec2Encoder
    from speechbrain_wsm.nnet.streaming_frontend import (
        StreamingFbankExtractor,
        WaveformStreamer,
    )

    torch.manual_seed(0)
    enc = _encoder("swsm", low_latency, layers=2, R=1, L=4)
    fe = StreamingFbankExtractor(n_mels=20, channels=[D, D])
    model = Wav2Vec2Encoder(fe, ContextNetwork(enc, D)).eval()
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        full = model(wav)[0]
        for chunk in (320, 1234, 5000):
            streamer, state, outs = WaveformStreamer(model), None, []
            for i in range(0, wav.shape[1], chunk):
                y, state = streamer.stream(wav[:, i : i + chunk], state)
                outs.append(y)
                fed = min(i + chunk, wav.shape[1])
                latents = max(0, (fed - streamer.span) // streamer.hop + 1)
                assert sum(o.shape[1] for o in outs) == max(0, latents - enc.lookahead)
                assert state["wav"].shape[1] < streamer.span + chunk
            y, state = streamer.stream(None, state, final=True)
            outs.append(y)
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


def test_running_fbank_norm_learns_in_training_and_streams_exactly():
    """``fbank_norm="running"``: training batches set per-bin statistics from
    their valid frames only; in eval the recogniser streams exactly as its
    offline forward; the default ``"frame"`` keeps the old state dict."""
    from speechbrain_wsm.models.streaming_ctc import StreamingFbankCTC

    def model(norm):
        torch.manual_seed(0)
        enc = _encoder("swsm", True, layers=2, R=1, L=4)
        return StreamingFbankCTC(
            enc, 30, n_mels=20, channels=(D, D), spec_augment=False, fbank_norm=norm
        )

    assert not any("running" in k for k in model("frame").state_dict())
    speech = torch.randn(2, 16000) * 3
    lens = torch.tensor([1.0, 0.5])
    stats = []
    for padding in (0.0, 1e4):  # the same speech, quiet or loud padding
        m = model("running").train()
        batch = speech.clone()
        batch[1, 8000:] = torch.randn(8000) * padding
        with torch.no_grad():
            m(batch, lens)
        stats.append(m.frontend.running.mean.clone())
    torch.testing.assert_close(stats[0], stats[1])  # padding never counts
    with torch.no_grad():
        m(speech[:1], lens[:1])
    norm = m.frontend.running
    assert int(norm.batches) == 2 and torch.isfinite(norm.var).all()
    assert (norm.mean - stats[1]).abs().max() > 0  # later batches move it
    m.eval()
    wav = torch.randn(1, 12000)
    with torch.no_grad():
        full, _ = m(wav)
        a, state = m.stream(wav[:, :5000])
        b, _ = m.stream(wav[:, 5000:], state, final=True)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="norm must be"):
        model("utterance")


def test_2d_front_end_reads_no_future_and_streams_exactly():
    """``frontend_conv="2d"``: convolutions over time and mel bins (feature
    maps flattened with the halved bins), valid along time, so a latent frame
    depends on its own window of audio only and the recogniser streams
    exactly as its offline forward; a wrong ``conv`` is a one-line error."""
    from speechbrain_wsm.models.streaming_ctc import StreamingFbankCTC
    from speechbrain_wsm.nnet.streaming_frontend import StreamingFbankExtractor

    fe = StreamingFbankExtractor(20, [4, 8], strides=[2, 2], conv="2d").eval()
    assert fe.out_dim == 8 * 5  # 20 bins -> 10 -> 5
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        y = fe(wav)
        n = int(fe.output_lengths(8000))
        torch.testing.assert_close(fe(wav[:, :8000]), y[:, :n], atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    m = StreamingFbankCTC(
        _encoder("swsm", True, layers=2, R=1, L=4),
        30,
        n_mels=20,
        channels=(4, 8),
        strides=(2, 2),
        frontend_conv="2d",
    ).eval()
    with torch.no_grad():
        full, _ = m(wav)
        outs, state = [], None
        for i in range(0, 16000, 1234):
            out, state = m.stream(wav[:, i : i + 1234], state)
            outs.append(out)
        outs.append(m.stream(None, state, final=True)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="conv must be"):
        StreamingFbankExtractor(20, [4, 8], conv="3d")


@pytest.mark.parametrize("arch", ["conformer", "transformer", "branchformer"])
def test_benchmark_gives_look_ahead_convolutions_to_two_stream_conformers_only(arch):
    """The benchmark's default (the CTC YAMLs') look-ahead convolutions: on
    for the two-stream Conformers, and no error for blocks without them
    (``scripts/gpu_check.sh`` benchmarks the paper's Transformer)."""
    from speechbrain_wsm.bench.streaming import build, encoder_config, parse_args

    cfg = encoder_config(parse_args(["--quick", "--arch", arch]))
    assert cfg["conv_lookahead"]
    for variant in ("llsa", "wsm", "sa"):
        enc = build(variant, cfg)
        assert enc.conv_lookahead == (arch == "conformer" and variant != "sa")


def test_benchmark_quick_run_writes_its_table(tmp_path, capsys):
    """The benchmark's plumbing (no timing asserted): rows, table, targets."""
    import json

    from speechbrain_wsm.bench import streaming as bench

    code = bench.main(
        ["--quick", "--device", "cpu", "--variants", "maa", "sa", "llsa",
         "--parts", "lookahead", "memory", "--no-plot", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "streaming_cpu.json").read_text())["rows"]
    looks = {r["variant"]: r["frames"] for r in rows if r["kind"] == "lookahead"}
    assert looks == {"maa": 8, "sa": 8, "llsa": 2}  # 4 layers, R = 2
    steps = [r for r in rows if r["kind"] == "train_step"]
    assert len(steps) == 6  # 3 variants x 2 quick lengths
    assert all(r["peak_mib"] is not None for r in steps)
    out = capsys.readouterr().out
    assert "| llsa | 2 frames (40 ms) |" in out and "LLSA / MAA look-ahead" in out


def test_benchmark_streams_the_whole_recogniser(tmp_path):
    """Streaming part of the benchmark (tiny sizes, no timing asserted): RTF,
    CPU RTF, onnxruntime RTF, look-ahead and latency rows."""
    import json

    pytest.importorskip("onnxruntime")
    from speechbrain_wsm.bench import streaming as bench

    code = bench.main(
        ["--device", "cpu", "--variants", "llsa", "--parts", "stream",
         "--layers", "2", "--d-model", "32", "--d-ffn", "64", "--nhead", "2",
         "--left-context", "8", "--right-context", "2", "--stream-seconds", "1",
         "--chunks", "1", "4", "--onnx", "--onnx-chunks", "1", "4", "--no-plot", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "streaming_cpu.json").read_text())["rows"]
    stream = [r for r in rows if r["kind"] == "stream"]
    assert [r["chunk_frames"] for r in stream] == [1, 4]
    for r in stream:
        assert r["rtf"] > 0 and r["rtf_cpu"] > 0 and r["rtf_onnx"] > 0
        assert r["lookahead_ms"] == 2 * 20 + 65  # R = 2 frames + front end window
        assert r["latency_ms"] > r["chunk_ms"] + r["lookahead_ms"]


def test_benchmark_measures_the_ctc_recipes_40_ms_frames(tmp_path, capsys):
    """``--frame-ms 40`` streams the streaming CTC recipes' recogniser (front
    end strides 2, 2): chunks, look-ahead and targets in its 40 ms frames."""
    import json

    from speechbrain_wsm.bench import streaming as bench

    code = bench.main(
        ["--device", "cpu", "--variants", "llsa", "--parts", "stream",
         "--layers", "2", "--d-model", "32", "--d-ffn", "64", "--nhead", "2",
         "--left-context", "8", "--right-context", "2", "--stream-seconds", "1",
         "--frame-ms", "40", "--chunks", "1", "4", "--no-plot", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "streaming_cpu.json").read_text())
    stream = [r for r in data["rows"] if r["kind"] == "stream"]
    assert [r["chunk_ms"] for r in stream] == [40.0, 160.0]
    # R = 2 frames of 40 ms + the front end's window past its hop (45 ms)
    assert {r["lookahead_ms"] for r in stream} == {2 * 40 + 45}
    out = capsys.readouterr().out
    assert "llsa streaming RTF, 160 ms chunks <= 0.15" in out
    assert "stream, chunk 4 (160 ms)" in out


def test_benchmark_checks_the_compiled_step_beside_the_eager_one():
    """``--compiled`` rows are held to the same RTF targets, in their own lines."""
    from types import SimpleNamespace

    from speechbrain_wsm.bench import streaming as bench

    rows = [
        {"device": "cpu", "variant": "llsa", "kind": "stream", "chunk_frames": c,
         "rtf": rtf, "rtf_compiled": comp}
        for c, rtf, comp in ((4, 0.17, 0.13), (1, 0.45, 0.55))
    ]  # fmt: skip
    args = SimpleNamespace(lengths=[60.0], layers=12, frame_ms=40)
    met = {c["target"]: c["ok"] for c in bench.check_targets(rows, args)}
    assert met["llsa streaming RTF, 160 ms chunks <= 0.15"] is False
    assert met["llsa streaming RTF (compiled step), 160 ms chunks <= 0.15"] is True
    assert met["llsa streaming RTF, 40 ms chunks <= 0.5"] is True
    assert met["llsa streaming RTF (compiled step), 40 ms chunks <= 0.5"] is False
    rows[0].pop("rtf_compiled")  # not measured: no line for it
    met = {c["target"] for c in bench.check_targets(rows, args)}
    assert "llsa streaming RTF (compiled step), 160 ms chunks <= 0.15" not in met


def _chunked(C=4, L=8, causal=False, layers=3):
    torch.manual_seed(3)
    return StreamingEncoder(
        layers,
        D,
        nhead=2,
        d_ffn=32,
        mixer="chunked",
        chunk_size=C,
        left_context=L,
        kernel_size=3,
        dropout=0.0,
        mixer_kwargs={"causal": causal},
    ).eval()


@pytest.mark.parametrize(("C", "L", "causal"), [(4, 8, False), (3, 0, False),
                                                (5, 15, True)])  # fmt: skip
def test_chunked_stream_equals_offline(C, L, causal):
    """Whole chunks (1 to 3 a call, the last one shorter): the offline output,
    every frame with its chunk, caches of one size."""
    enc = _chunked(C, L, causal)
    assert enc.lookahead == (0 if causal else C - 1)
    T = 47
    x = torch.randn(2, T, D)
    with torch.no_grad():
        full, _ = enc(x)
        empty = _state_numel(enc.init_stream(2))
        for per_call in (1, 2, 3):
            step = per_call * C
            outs, state, fed = [], None, 0
            while fed + step <= T:
                y, state = enc.stream(x[:, fed : fed + step], state)
                fed += step
                outs.append(y)
                assert sum(o.shape[1] for o in outs) == fed  # no delay
                assert _state_numel(state) == empty
            y, state = enc.stream(x[:, fed:], state, final=True)
            outs.append(y)
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


def test_chunked_stream_equals_padded_batch():
    enc = _chunked(4, 4)
    lengths = [30, 17, 3]
    x = torch.randn(3, 30, D)
    with torch.no_grad():
        full, _ = enc(x, _pad_mask(lengths, 30))
        for b, n in enumerate(lengths):
            y1, state = enc.stream(x[b : b + 1, : n // 8 * 4])
            y2, _ = enc.stream(x[b : b + 1, n // 8 * 4 : n], state, final=True)
            got = torch.cat([y1, y2], 1)[0]
            torch.testing.assert_close(got, full[b, :n], atol=2e-5, rtol=1e-4)


def test_chunked_work_is_constant_per_chunk():
    """FLOPs of a chunk once the left chunks are cached: the same after 60 or
    600 frames of past; two chunks cost twice one; the state keeps its size."""
    enc = _chunked(4, 8)
    f1, s_short = _chunk_flops(enc, 4)
    f1_late, s_long = _chunk_flops(enc, 4, warm=600)
    f2, _ = _chunk_flops(enc, 8)
    assert f1 > 0 and f1 == f1_late and f2 == 2 * f1
    assert _state_numel(s_short) == _state_numel(s_long)


def test_chunked_measured_lookahead_is_the_chunk():
    enc = _chunked(4, 8, layers=4)
    assert _measured(enc) == enc.lookahead == 3


def test_chunked_refuses_what_it_cannot_stream_exactly():
    enc = _chunked(4, 8)
    x = torch.randn(1, 12, D)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"multiple of chunk_size=4 .* got 6"):
            enc.stream(x[:, :6])
        _, state = enc.stream(x[:, :8])
        with pytest.raises(ValueError, match="multiple of chunk_size=4"):
            enc.stream(x[:, 8:11], state)
        y, _ = enc.stream(x[:, 8:11], state, final=True)  # the end may be short
        assert y.shape[1] == 3
    for kwargs, match in [
        ({"left_context": 6}, "multiple of chunk_size"),
        ({"right_context": 2}, "right_context must be 0"),
        ({"chunk_size": None}, "needs chunk_size"),
        ({"mixer": "sa"}, "chunk_size is for mixer='chunked'"),
    ]:
        args = {"mixer": "chunked", "chunk_size": 4, "left_context": 8, **kwargs}
        with pytest.raises(ValueError, match=match):
            StreamingEncoder(1, D, nhead=2, d_ffn=32, **args)


def test_chunked_recogniser_streams_any_audio_chunk():
    """The recogniser holds the frames of an unfinished chunk: audio chunks of
    any size give the offline log-probabilities."""
    from speechbrain_wsm.models.streaming_ctc import ChunkStep, StreamingFbankCTC

    enc = _chunked(4, 8, layers=2)
    model = StreamingFbankCTC(enc, 12, n_mels=20, channels=(D, D)).eval()
    wav = torch.randn(1, 12000)
    with torch.no_grad():
        full, _ = model(wav)
        for chunk in (320, 1000, 4321):
            outs, state = [], None
            for i in range(0, wav.shape[1], chunk):
                y, state = model.stream(wav[:, i : i + chunk], state)
                outs.append(y)
                assert state["frames"] is None or state["frames"].shape[1] < 4
            outs.append(model.stream(None, state, final=True)[0])
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="chunked encoder streams in PyTorch"):
        ChunkStep(model, 4)


@pytest.mark.parametrize("kind", ["llsa", "llsa_conv", "chunked"])
def test_compiled_stream_is_opt_in_and_equal(kind, monkeypatch):
    """stream(compiled=True) runs its steady chunks through torch.compile (and
    only then), within 1e-5 of the eager stream, and a second stream of the
    same chunk size reuses the graph without recompiling."""
    from speechbrain_wsm.nnet import streaming_cache

    calls, real = [], streaming_cache.compiled_step

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(streaming_cache, "compiled_step", counted)
    if kind.startswith("llsa"):  # one layer: the test pays an Inductor compilation
        enc = _encoder(
            "sa", "conv" if kind == "llsa_conv" else True, layers=1, R=2, L=5
        )
    else:
        enc = _chunked(layers=1)
    x = torch.randn(1, 40, D)
    torch._dynamo.reset()
    with torch.no_grad():
        full, _ = enc(x)
        eager = _stream_all(enc, x, 4)
        assert not calls  # opt-in
        compiled = _stream_all(enc, x, 4, compiled=True)
        steady = len(calls)
        assert steady >= 8  # 10 chunks of 4: all but the first
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled, full, atol=2e-5, rtol=1e-4)
        wider = torch.cat([x, x], 1)[:, :40]  # the same frames, other strides
        with torch._dynamo.config.patch(error_on_recompile=True):
            again = _stream_all(enc, wider, 4, compiled=True)
        assert len(calls) == 2 * steady
        torch.testing.assert_close(again, compiled, atol=1e-6, rtol=0)


def test_benchmark_streams_a_chunked_recogniser(tmp_path):
    """The chunked variant in the benchmark (tiny sizes, no timing asserted):
    its look-ahead is the rest of a chunk, and it streams from 20 ms chunks
    of audio (the recogniser holds them until a chunk is whole)."""
    import json

    from speechbrain_wsm.bench import streaming as bench

    code = bench.main(
        ["--device", "cpu", "--variants", "chunked", "--parts", "lookahead", "stream",
         "--layers", "2", "--d-model", "32", "--d-ffn", "64", "--nhead", "2",
         "--left-context", "8", "--chunk-size", "4", "--stream-seconds", "1",
         "--chunks", "1", "4", "--no-plot", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "streaming_cpu.json").read_text())["rows"]
    looks = [r["frames"] for r in rows if r["kind"] == "lookahead"]
    assert looks == [3]
    stream = [r for r in rows if r["kind"] == "stream"]
    assert [r["chunk_frames"] for r in stream] == [1, 4]
    for r in stream:
        assert r["rtf"] > 0 and r["lookahead_ms"] == 3 * 20 + 65
