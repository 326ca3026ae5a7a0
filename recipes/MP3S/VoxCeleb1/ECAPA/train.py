#!/usr/bin/env python3
"""MP3S VoxCeleb1 speaker verification probe: frozen SSL encoder, ECAPA-TDNN.

::

    python train.py hparams/ssl.yaml --ssl_source=results/wav2vec2_wsm/1986 \\
        --data_folder=/data/VoxCeleb1

The probe (the weighted layer sum and an ECAPA-TDNN on it) learns speaker
embeddings by classifying the training speakers (every VoxCeleb1 speaker not
in the trial list) with an additive angular margin softmax, on random
``sentence_len`` crops. With the best checkpoint (lowest validation
classification error), every trial-list utterance is embedded whole, trials
are scored by cosine similarity, and the EER and minDCF go to
``results.md`` (the scores to ``scores.txt``). The encoder never trains.
"""

import os
import random
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_wsm.data.audio import load_audio
from speechbrain_wsm.data.manifests import read_manifest
from speechbrain_wsm.recipe import manifest_dataset
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint
from speechbrain_wsm.recipe.probe import (
    ClassifierProbeBrain,
    fit_probe,
    setup_experiment,
)
from speechbrain_wsm.scoring import write_results_md


class SpeakerProbeBrain(ClassifierProbeBrain):
    """AAM-softmax speaker classification on top of a frozen encoder.

    The shared probe Brain with the embedding model as the probe and the
    speaker classifier trained with it; the learning rate decays by epoch
    (``lr_annealing``).
    """

    model_key = "embedding_model"

    def parameter_groups(self):
        groups = super().parameter_groups()
        groups["model"] += list(self.modules.classifier.parameters())
        return groups

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        # random crops change an ID's audio from one epoch to the next: no cache
        crops = stage == sb.Stage.TRAIN and self.hparams.random_chunk
        emb, _ = self.modules.embedding_model(
            wavs, wav_lens, ids=None if crops else batch.id
        )
        return self.modules.classifier(emb)

    def compute_objectives(self, outputs, batch, stage):
        targets = batch.spk_label.to(self.device).unsqueeze(1)
        if stage != sb.Stage.TRAIN:
            self.count_errors(outputs.squeeze(1).argmax(-1), targets.squeeze(1))
        return self.hparams.compute_cost(outputs, targets)

    def anneal(self, stats, epoch):
        _, new_lr = self.hparams.lr_annealing(epoch)
        optimizer = self.optimizers_dict["model_optimizer"]
        sb.nnet.schedulers.update_learning_rate(optimizer, new_lr)


def dataio_prepare(hparams, speakers):
    """Training (random crops), validation and test datasets."""
    index = {spk: i for i, spk in enumerate(speakers)}
    rate, crop = hparams["sample_rate"], hparams["sentence_len"]

    def make(csv, train):
        data = manifest_dataset(csv, sort=None if train else "descending")

        @sb.utils.data_pipeline.takes("wav", "duration")
        @sb.utils.data_pipeline.provides("sig")
        def audio(wav, duration):
            duration = float(duration)
            if train and hparams["random_chunk"] and duration > crop:
                start = random.uniform(0.0, duration - crop)
                return load_audio(wav, start, start + crop, rate)
            return load_audio(wav, sample_rate=rate)

        @sb.utils.data_pipeline.takes("spk_id")
        @sb.utils.data_pipeline.provides("spk_label")
        def label(spk_id):
            return index.get(spk_id, -1)

        data.add_dynamic_item(audio)
        data.add_dynamic_item(label)
        data.set_output_keys(["id", "sig", "spk_label"])
        return data

    return make(hparams["train_csv"], True), make(hparams["valid_csv"], False)


@torch.no_grad()
def embed(brain, hparams, csv):
    """Normalised embeddings of every utterance of ``csv``, by ID."""
    data = manifest_dataset(csv, sort="descending")
    rate = hparams["sample_rate"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio(wav):
        return load_audio(wav, sample_rate=rate)

    data.add_dynamic_item(audio)
    data.set_output_keys(["id", "sig"])
    model = brain.model().eval()
    out = {}
    for batch in sb.dataio.dataloader.make_dataloader(
        data, batch_size=hparams["test_batch_size"]
    ):
        batch = batch.to(brain.device)
        wavs, wav_lens = batch.sig
        emb, _ = model(wavs, wav_lens, ids=batch.id)
        for uid, e in zip(batch.id, F.normalize(emb.squeeze(1), dim=-1).cpu()):
            out[uid] = e
    return out


def prepare(hparams):
    if not hparams["skip_prep"]:
        hparams["prepare_data"]()


def main(argv):
    hparams, run_opts = setup_experiment(argv)
    run_on_main(prepare, args=[hparams])
    speakers = sorted(
        {
            r["spk_id"]
            for c in ("train_csv", "valid_csv")
            for r in read_manifest(hparams[c])
        }
    )
    if len(speakers) > hparams["out_n_neurons"]:
        raise ValueError(
            f"{len(speakers)} training speakers but out_n_neurons is "
            f"{hparams['out_n_neurons']}: raise it"
        )
    train, valid = dataio_prepare(hparams, speakers)

    brain = fit_probe(
        SpeakerProbeBrain,
        hparams,
        run_opts,
        train,
        valid,
        train_loader={"shuffle": True, "drop_last": True},
        valid_loader={"batch_size": hparams["test_batch_size"]},
    )

    if not if_main_process():
        return
    recover_checkpoint(hparams["checkpointer"], "best", key="error_rate")
    embeddings = embed(brain, hparams, hparams["test_csv"])
    positive, negative, lines = [], [], []
    with open(hparams["trials_file"], encoding="utf-8") as f:
        for line in f:
            label, enrol, test = line.split()
            score = float(torch.dot(embeddings[enrol], embeddings[test]))
            (positive if label == "1" else negative).append(score)
            lines.append(f"{enrol} {test} {label} {score:.6f}")
    with open(os.path.join(hparams["output_folder"], "scores.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    eer, _ = EER(torch.tensor(positive), torch.tensor(negative))
    min_dcf, _ = minDCF(torch.tensor(positive), torch.tensor(negative), p_target=0.01)
    write_results_md(
        os.path.join(hparams["output_folder"], "results.md"),
        {
            "ecapa": {
                "EER (%)": 100.0 * float(eer),
                "minDCF (p=0.01)": float(min_dcf),
                "trials": len(lines),
            }
        },
        title="MP3S VoxCeleb1 speaker verification probe",
        note=f"Encoder: `{hparams['ssl_source']}`. Cosine scoring of whole "
        "utterances, no score normalisation. Learned layer weights (input "
        f"first): {brain.layer_weights_text()}.",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
