"""WER scoring against SpeechBrain's ErrorRateStats, and CTC decoding."""

import random

import torch
from speechbrain.utils.metric_stats import ErrorRateStats

from speechbrain_wsm.data.tokenizers import CharTokenizer
from speechbrain_wsm.decoding import CTCBeamDecoder, ctc_greedy_decode
from speechbrain_wsm.scoring import score, write_results_md, write_wer_file

WORDS = "THE CAT SAT ON A MAT AND DOG RAN FAR".split()


def _pairs(n, seed=0):
    rng = random.Random(seed)
    ids, refs, hyps = [], [], []
    for i in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(0, 9))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 4)):
            op = rng.choice("isd")
            pos = rng.randint(0, len(hyp))
            if op == "i":
                hyp.insert(pos, rng.choice(WORDS))
            elif hyp and pos < len(hyp):
                if op == "s":
                    hyp[pos] = rng.choice(WORDS)
                else:
                    del hyp[pos]
        ids.append(f"utt{i}")
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return ids, refs, hyps


def test_jiwer_scores_agree_with_speechbrain_error_rate_stats():
    ids, refs, hyps = _pairs(300)
    details, summary = score(ids, refs, hyps)
    stats = ErrorRateStats()
    stats.append(ids, [h.split() for h in hyps], [r.split() for r in refs])
    sb = stats.summarize()
    assert summary["num_edits"] == sb["num_edits"]
    assert summary["num_scored_tokens"] == sb["num_scored_tokens"]
    assert abs(summary["WER"] - sb["WER"]) < 1e-9
    assert summary["SER"] == sb["SER"]
    sb_by_id = {d["key"]: d["num_edits"] for d in stats.scores}
    assert all(d["num_edits"] == sb_by_id[d["key"]] for d in details)


def test_wer_file_has_speechbrain_format(tmp_path):
    ids, refs, hyps = (
        ["a", "b", "c"],
        ["ONE TWO THREE", "FOUR", "FIVE SIX"],
        ["ONE THREE", "FOUR FOUR", None],
    )
    summary = write_wer_file(tmp_path / "wer_test.txt", ids, refs, hyps)
    text = (tmp_path / "wer_test.txt").read_text().splitlines()
    assert text[0] == "%WER 50.00 [ 2 / 4, 1 ins, 1 del, 0 sub ] [PARTIAL]"
    assert text[1].startswith("%SER 100.00 [ 2 / 2 ]")
    assert "Scored 2 sentences, 1 not present in hyp." in text[2]
    assert any(line.startswith("a, %WER 33.33") for line in text)
    assert summary["num_absent_sents"] == 1


def test_results_md_table(tmp_path):
    text = write_results_md(
        tmp_path / "results.md", {"wsm": {"test-clean": {"WER": 12.345}, "steps": 3}}
    )
    assert "| wsm | 12.35 | 3 |" in text
    assert (tmp_path / "results.md").read_text() == text


def test_greedy_respects_lengths_and_merges_repeats():
    lp = torch.full((2, 6, 4), -10.0)
    for b, seq in enumerate([[1, 1, 0, 1, 2, 3], [3, 3, 3, 0, 2, 2]]):
        for t, u in enumerate(seq):
            lp[b, t, u] = 0.0
    assert ctc_greedy_decode(lp) == [[1, 1, 2, 3], [3, 2]]
    assert ctc_greedy_decode(lp, torch.tensor([0.5, 1 / 6])) == [[1], [3]]
    assert ctc_greedy_decode(lp, torch.tensor([4 / 6, 0.0])) == [[1, 1], []]


def test_prefix_beam_search_sums_paths_where_greedy_cannot():
    """P(blank)=0.6, P(A)=0.4 on two frames: greedy says "", but
    P("A") = 0.4*0.4 + 2*0.4*0.6 = 0.64 > P("") = 0.36."""
    tok = CharTokenizer.from_texts(["A"])
    a = tok.encode("A")[0]
    p = torch.full((1, 2, len(tok)), 1e-6)
    p[0, :, 0], p[0, :, a] = 0.6, 0.4
    lp = (p / p.sum(-1, keepdim=True)).log()
    assert tok.decode(ctc_greedy_decode(lp)[0]) == ""
    assert CTCBeamDecoder(tok, beam_size=8)(lp) == ["A"]


def test_beam_matches_greedy_on_confident_outputs():
    tok = CharTokenizer.from_texts(["HELLO WORLD"])
    ids = tok.encode("HELLO WORLD")
    frames = []
    for prev, u in zip([None] + ids, ids, strict=False):
        if prev == u:
            frames.append(0)
        frames.append(u)
    lp = torch.full((1, len(frames), len(tok)), -8.0)
    for t, u in enumerate(frames):
        lp[0, t, u] = 0.0
    lp = lp.log_softmax(-1)
    greedy = tok.decode(ctc_greedy_decode(lp)[0])
    assert greedy == "HELLO WORLD"
    assert CTCBeamDecoder(tok, beam_size=4)(lp) == [greedy]
