"""Probes count only the encoder's real frames, not padding (issue 12, item 7)."""

import torch
from tiny_models import make_project_encoder

from speechbrain_wsm.models.ssl import SSLProbe, load_ssl_encoder


class _LengthsSeen(torch.nn.Module):
    """A head that records the lengths it is given."""

    def __init__(self, size):
        super().__init__()
        self.proj = torch.nn.Linear(size, 2)
        self.seen = None

    def forward(self, x, lengths):
        self.seen = lengths
        return self.proj(x)


def test_one_second_in_a_ten_second_batch_has_its_own_frames(tmp_path):
    encoder = load_ssl_encoder(make_project_encoder(tmp_path / "w2v2"))
    head = _LengthsSeen(encoder.hidden_size)
    probe = SSLProbe(encoder, head)
    wavs = torch.zeros(2, 160000)
    wavs[0].normal_(0, 0.1)
    wavs[1, :16000].normal_(0, 0.1)
    out, lens = probe(wavs, torch.tensor([1.0, 0.1]))
    frames = torch.round(lens * out.shape[1]).long()
    own = encoder.output_lengths(torch.tensor([160000, 16000]))
    assert frames.tolist() == own.tolist()
    # fewer than the 1/10 share of the batch's frames that the input length gives
    assert frames[1] < round(0.1 * out.shape[1])
    assert torch.equal(head.seen, lens)  # the head sees the same lengths
