"""ONNX export: offline and streaming (chunk step with explicit caches) equal
PyTorch in onnxruntime within 1e-4 on recorded audio; SM/WSM use standard
operators only; clear errors for what cannot be exported."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from speechbrain_wsm.data.audio import load_audio  # noqa: E402
from speechbrain_wsm.export import (  # noqa: E402
    OnnxStreamer,
    _exportable_scans,
    check,
    export_offline,
    export_streaming,
    torch_runner,
)
from speechbrain_wsm.models.ctc_asr import FbankCTC  # noqa: E402
from speechbrain_wsm.models.streaming_ctc import ChunkStep, StreamingFbankCTC  # noqa: E402
from speechbrain_wsm.nnet.encoders import MixerEncoder  # noqa: E402
from speechbrain_wsm.nnet.streaming_encoder import StreamingEncoder  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def audio():
    path = sorted((SAMPLES / "LibriSpeech").rglob("*.flac"))[0]
    return load_audio(path, sample_rate=16000)[:40000]  # 2.5 s of real speech


def _streaming(mixer="swsm", low_latency=True):
    """``low_latency="conv"``: LLSA with look-ahead convolutions."""
    torch.manual_seed(0)
    enc = StreamingEncoder(2, 32, nhead=2, d_ffn=64, mixer=mixer, kernel_size=5,
                           left_context=8, right_context=2,
                           low_latency=bool(low_latency),
                           conv_lookahead=low_latency == "conv")  # fmt: skip
    return StreamingFbankCTC(enc, 30, n_mels=20, channels=(16, 16)).eval()


def _standard_ops_only(path):
    import onnx

    proto = onnx.load(str(path))
    domains = {n.domain for n in proto.graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # no custom operator
    assert not proto.functions or all(
        n.domain in ("", "ai.onnx") for f in proto.functions for n in f.node
    )


@pytest.mark.parametrize(
    ("mixer", "low_latency"), [("swsm", True), ("sa", True), ("swsm", "conv")]
)
def test_streaming_export_equals_pytorch_chunk_by_chunk(
    tmp_path, audio, mixer, low_latency
):
    model = _streaming(mixer, low_latency)
    path = export_streaming(model, tmp_path / "step.onnx", chunk_frames=4)
    _standard_ops_only(path)
    assert check(model, path, audio, streaming=True) < 1e-4
    # fed in uneven pieces, the runtime driver gives the same frames
    s = OnnxStreamer(path)
    frames = []
    for i in range(0, audio.shape[0], 3001):
        frames += s.feed(audio[i : i + 3001].numpy())
    frames += s.finish()
    with torch.no_grad():
        ref = model(audio[None])[0][0]
    assert len(frames) == ref.shape[0]
    got = torch.from_numpy(__import__("numpy").stack(frames))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("low_latency", [True, "conv"])
def test_offline_export_of_streaming_model(tmp_path, audio, low_latency):
    # streaming WSM; SA's blockwise band does not export with a dynamic length yet
    model = _streaming("swsm", low_latency)
    path = export_offline(model, tmp_path / "m.onnx")
    assert check(model, path, audio, streaming=False) < 1e-4
    assert check(model, path, audio[:17777], streaming=False) < 1e-4


def test_torch_chunk_step_equals_offline(audio):
    model = _streaming("maa", False)
    runner = torch_runner(ChunkStep(model, 3))
    frames = runner.feed(audio.numpy()) + runner.finish()
    with torch.no_grad():
        ref = model(audio[None])[0][0]
    torch.testing.assert_close(torch.stack(frames), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="finished"):
        runner.feed(audio[:10].numpy())


@pytest.mark.parametrize(
    "mixer,frontend_conv", [("sm", "2d"), ("wsm", "2d"), ("wsm", "1d")]
)
def test_offline_export_of_summary_mixing(tmp_path, audio, mixer, frontend_conv):
    torch.manual_seed(0)
    kwargs = {"window_size": 4} if mixer == "wsm" else {}
    enc = MixerEncoder(2, 32, nhead=2, d_ffn=64, mixer=mixer, mixer_kwargs=kwargs)
    channels = (8, 8) if frontend_conv == "2d" else (32, 32)
    model = FbankCTC(
        enc, 30, 32, n_mels=20, cnn_channels=channels, frontend_conv=frontend_conv
    ).eval()
    path = export_offline(model, tmp_path / "m.onnx")
    _standard_ops_only(path)
    # FbankCTC's SpeechBrain Fbank is float32: its quietest bins' log energies
    # depend on the FFT implementation (~1e-3); the streaming front end
    # computes its spectrum in float64 and meets 1e-4 (tests above)
    assert check(model, path, audio, streaming=False) < 2e-3
    assert check(model, path, audio[:20000], streaming=False) < 2e-3  # any length
    with pytest.raises(ValueError, match="no streaming encoder|has none"):
        export_streaming(model, tmp_path / "s.onnx")


@pytest.mark.parametrize("left,right", [(2, 1), (None, 0), (0, None), (None, None)])
def test_export_window_sums_equal_the_eager_ones_unbounded_sides_included(left, right):
    from speechbrain_wsm.nnet import frame_sums

    u = torch.randn(2, 7, 3)
    eager = frame_sums.box_sums(u, left, right)
    with _exportable_scans():
        exported = frame_sums.box_sums(u, left, right)
    torch.testing.assert_close(exported, eager)
