"""Score a trained CTC recipe on a manifest: what ``python -m speechbrain_wsm.evaluate``,
``transcribe``, ``export`` and every CTC recipe's final test share.

:func:`load_recipe` loads a run's ``hyperparams.yaml`` (the folder given is
the folder used), :func:`load_trained` its trained ``asr_model`` and
tokenizer, :func:`transcribe` decodes a manifest and :func:`evaluate_manifest`
writes ``wer_<name>.txt`` and ``cer_<name>.txt``; :func:`decoding_options`
resolves the decoding keys (:data:`DECODING_DEFAULTS`). The contract a recipe
follows to be scored this way is in :mod:`speechbrain_wsm.evaluate`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from speechbrain_wsm.decoding import build_decoder
from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError
from speechbrain_wsm.recipe.checkpoints import recover_checkpoint

__all__ = [
    "DECODING_DEFAULTS",
    "decoding_options",
    "evaluate_manifest",
    "load_recipe",
    "load_trained",
    "transcribe",
]

logger = logging.getLogger(__name__)


def _loader(manifest: str, data_folder, sample_rate: int, batch_size: int):
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.dataio.dataloader import make_dataloader
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_wsm.data.audio import (
        add_audio_pipeline,
        drop_unreadable,
        skip_undecodable,
    )
    from speechbrain_wsm.data.manifests import check_manifest

    check_manifest(manifest)  # missing, not UTF-8, no rows, an ID twice
    replacements = {"data_root": data_folder} if data_folder else {}
    dataset = DynamicItemDataset.from_csv(manifest, replacements=replacements)
    first = next(iter(dataset.data.values()), None)
    if first is None:
        raise ValueError(f"manifest '{manifest}' has no utterance")
    missing = [k for k in ("wav", "wrd") if k not in first]
    if missing:
        raise UserValueError(f"manifest '{manifest}' lacks the column(s) {missing}")
    if "duration" in first:
        dataset = dataset.filtered_sorted(sort_key="duration", reverse=True)
    # score what can be read; the rows that cannot are listed, not fatal
    dataset, bad = drop_unreadable(dataset, manifest, "skip")
    add_audio_pipeline([dataset], ["id", "sig", "wrd"], sample_rate)
    # a file whose body fails to decode is listed, not fatal
    dataset = skip_undecodable(dataset)
    loader = make_dataloader(dataset, batch_size=batch_size, collate_fn=PaddedBatch)
    return loader, bad


@torch.no_grad()
def transcribe(
    asr_model: torch.nn.Module,
    decode: Callable,
    manifest: str,
    data_folder: str | None = None,
    sample_rate: int = 16000,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    unreadable: list | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """Decode every utterance of a manifest whose audio can be read.

    Rows whose audio cannot be read are left out (with a warning listing
    them) rather than aborting the set, and so is an utterance the model
    cannot take (a batch that fails is decoded again one utterance at a time);
    pass a list as ``unreadable`` to get their ``(ID, reason)``.

    Arguments
    ---------
    asr_model : nn.Module
        ``asr_model(wavs, wav_lens) -> (log_probs, out_lens)``.
    decode : callable
        From :func:`build_decoder`.
    manifest : str
        CSV with ``ID``, ``wav``, ``wrd``.
    data_folder : str, optional
        Replaces ``$data_root`` in the manifest.
    sample_rate : int
        Rate the model takes.
    batch_size : int
        Utterances per batch (longest first).
    device : str or torch.device
        Where to run.
    unreadable : list, optional
        Extended with ``(ID, reason)`` of each row that could not be read or
        scored.

    Returns
    -------
    ids, refs, hyps : list of str
        Utterance IDs, references and hypotheses, longest utterance first.
    """
    loader, bad = _loader(manifest, data_folder, sample_rate, batch_size)
    if unreadable is not None:
        unreadable.extend(bad)
    was_training = asr_model.training
    asr_model.eval()
    ids, refs, hyps = [], [], []

    def run(wavs, wav_lens):
        log_probs, out_lens = asr_model(wavs.to(device), wav_lens.to(device))
        return decode(log_probs.float().cpu(), out_lens.float().cpu())

    try:
        for batch in loader:
            wavs, wav_lens = batch.sig
            words = [" ".join(w.split()) for w in batch.wrd]
            try:
                hyps += run(wavs, wav_lens)
                ids += list(batch.id)
                refs += words
                continue
            except (RuntimeError, ValueError) as e:
                if len(batch.id) > 1:
                    logger.warning("batch %s failed (%s); one by one", batch.id, e)
            # one utterance at a time: the one the model cannot take (a clip
            # too short for its front end ...) is listed, the others scored
            for i, uid in enumerate(batch.id):
                n = int(round(float(wav_lens[i]) * wavs.shape[1]))
                try:
                    hyps += run(wavs[i : i + 1, :n], torch.ones(1))
                except (RuntimeError, ValueError) as e:
                    why = f"not scored: {type(e).__name__}: {str(e).splitlines()[0]}"
                    logger.warning("%s %s", uid, why)
                    if unreadable is not None:
                        unreadable.append((uid, why))
                    continue
                ids.append(uid)
                refs.append(words[i])
    finally:
        asr_model.train(was_training)
    if unreadable is not None:
        undecodable = getattr(loader.dataset, "undecodable", [])
        unreadable.extend((uid, f"not scored: {why}") for uid, why in undecodable)
    return ids, refs, hyps


def evaluate_manifest(
    asr_model: torch.nn.Module,
    tokenizer,
    manifest: str,
    wer_file: str,
    decoder: str = "greedy",
    beam_size: int = 20,
    kenlm_model_path: str | None = None,
    lm_weight: float = 0.5,
    word_bonus: float = 1.0,
    data_folder: str | None = None,
    sample_rate: int = 16000,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    lexicon: str | None = None,
) -> dict:
    """Decode a manifest, write ``wer_file`` and the ``cer_`` file beside it.

    ``wer_file`` is ``<folder>/wer_<name>.txt``; the character error rates go
    to ``<folder>/cer_<name>.txt``. Returns the WER summary (SpeechBrain's
    keys: ``WER``, ``SER``, ``num_edits`` ..., computed with jiwer) with
    ``CER`` and ``cer_summary`` added
    (:func:`speechbrain_wsm.scoring.write_error_rate_files`), and
    ``unreadable``: ``(ID, reason)`` of the rows whose audio could not be
    read, which are not scored (listed in the log and in
    ``<folder>/unreadable_<name>.txt``).
    """
    from speechbrain_wsm.scoring import write_error_rate_files

    decode = build_decoder(
        tokenizer, decoder, beam_size, kenlm_model_path, lm_weight, word_bonus, lexicon
    )
    unreadable: list[tuple[str, str]] = []
    ids, refs, hyps = transcribe(
        asr_model,
        decode,
        manifest,
        data_folder,
        sample_rate,
        batch_size,
        device,
        unreadable,
    )
    folder, stem = os.path.split(os.path.splitext(wer_file)[0])
    name = stem[4:] if stem.startswith("wer_") else stem
    summary = write_error_rate_files(folder or ".", name, ids, refs, hyps)
    summary["unreadable"] = unreadable
    listing = os.path.join(folder or ".", f"unreadable_{name}.txt")
    if unreadable:
        with open(listing, "w", encoding="utf-8") as f:
            f.write(
                f"# rows of {manifest} not scored (unreadable audio, or input the model cannot take)\n"
            )
            f.writelines(f"{uid}\t{why}\n" for uid, why in unreadable)
    elif os.path.exists(listing):  # from an earlier evaluation
        os.remove(listing)
    return summary


def load_recipe(run: str, overrides: dict | None = None) -> tuple[dict, Path]:
    """Load a recipe's hyperparameters for evaluation.

    Arguments
    ---------
    run : str
        A recipe output folder (holding ``hyperparams.yaml``) or a YAML file.
    overrides : dict, optional
        Values replacing top-level keys.

    Returns
    -------
    hparams : dict
        The loaded hyperparameters (objects built).
    folder : Path
        The run folder (the YAML's folder).

    Notes
    -----
    The folder given is the folder used: ``hyperparams.yaml`` records the
    run's absolute ``output_folder``, so a copied or moved run folder would
    load the original run's checkpoints and files. Unless ``output_folder``
    is overridden, it becomes the folder given, and every top-level path
    under the recorded folder (``tokenizer_file`` ...) moves with it.
    """
    from hyperpyyaml import load_hyperpyyaml

    path = Path(run)
    if path.is_dir():
        path = path / "hyperparams.yaml"
    if not path.is_file():
        raise UserFileNotFoundError(
            f"{path} not found: pass a recipe output folder (holding the "
            "hyperparams.yaml the recipe wrote) or a YAML file"
        )
    overrides = {**_moved_paths(path), **(overrides or {})}
    with open(path, encoding="utf-8") as f:
        try:
            hparams = load_hyperpyyaml(f, overrides or {}, overrides_must_match=True)
        except KeyError as e:
            if "not found in" not in str(e):
                raise
            raise UserValueError(f"unknown override for {path}: {e.args[0]}") from None
    missing = [k for k in ("asr_model", "checkpointer") if k not in hparams]
    if "tokenizer_file" not in hparams and "tokenizer" not in hparams:
        missing.append("tokenizer_file")
    if missing:
        raise KeyError(
            f"{path} lacks {missing}: see `python -m speechbrain_wsm.evaluate "
            "--help` for the keys a recipe must define"
        )
    return hparams, path.parent


def _moved_paths(path: Path) -> dict:
    """Overrides making a run folder's ``hyperparams.yaml`` point at that folder.

    ``{"output_folder": <the folder>, ...}`` when the recorded
    ``output_folder`` is another folder (a copy or a moved run); top-level
    paths under the recorded folder follow it. Empty for a YAML that is not
    a run's record, or a run that did not move.
    """
    import ruamel.yaml

    try:
        with open(path, encoding="utf-8") as f:
            tree = ruamel.yaml.YAML().load(f) or {}
    except (ruamel.yaml.YAMLError, UnicodeDecodeError):
        return {}  # load_hyperpyyaml says what is wrong
    recorded = tree.get("output_folder") if hasattr(tree, "get") else None
    if path.name != "hyperparams.yaml" or not isinstance(recorded, str):
        return {}
    here = path.parent.resolve()
    try:
        if Path(recorded).resolve() == here:
            return {}
    except OSError:
        pass
    moved = {"output_folder": str(here)}
    old = recorded.rstrip("/") + "/"
    for key, value in tree.items():
        if key != "output_folder" and isinstance(value, str) and value.startswith(old):
            moved[key] = str(here / value[len(old) :])
    logger.info(
        "%s records output_folder %s; using the folder given, %s", path, recorded, here
    )
    return moved


def load_trained(
    hparams: dict,
    run_folder: Path | None = None,
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, object]:
    """A recipe's trained ``asr_model`` and its tokenizer, ready to decode.

    The tokenizer is ``hparams["tokenizer"]`` or read from ``tokenizer_file``,
    the checkpoint is loaded with :func:`recover_checkpoint`, and the model is
    moved to ``device`` in eval mode. :func:`speechbrain_wsm.evaluate.main` and
    :mod:`speechbrain_wsm.transcribe` load models this way.

    Arguments
    ---------
    hparams : dict
        A recipe's hyperparameters (``asr_model``, ``checkpointer`` and
        ``tokenizer_file`` or ``tokenizer``).
    run_folder : Path, optional
        The run folder (checkpoints are read from ``run_folder/save`` when the
        run moved); see :func:`recover_checkpoint`.
    checkpoint : str
        ``"best"``, ``"latest"`` or a ``CKPT+...`` folder.
    device : str or torch.device
        Where the model goes.

    Returns
    -------
    model : nn.Module
        ``model(wavs, wav_lens) -> (log_probs, out_lens)``.
    tokenizer : CharTokenizer or SentencePieceTokenizer
        The units.
    """
    from speechbrain_wsm.data.tokenizers import load_tokenizer

    tokenizer = hparams.get("tokenizer")
    if tokenizer is None or isinstance(tokenizer, str):
        tokenizer = load_tokenizer(hparams.get("tokenizer_file") or tokenizer)
    recover_checkpoint(hparams["checkpointer"], checkpoint, run_folder)
    return hparams["asr_model"].to(device).eval(), tokenizer


#: The decoding keys a recipe may define, with the values used when it does not
#: (the arguments of :func:`~speechbrain_wsm.decoding.build_decoder`).
DECODING_DEFAULTS = {
    "decoder": "greedy",
    "beam_size": 20,
    "kenlm_model_path": None,
    "lm_weight": 0.5,
    "word_bonus": 1.0,
    "lexicon": None,
}


def decoding_options(hparams: dict, **given) -> dict:
    """A recipe's decoding options: each ``given`` value that is not ``None``,
    else the recipe's when not ``None``, else :data:`DECODING_DEFAULTS`.

    Raises ``TypeError`` naming a ``given`` key that is not a decoding option.

    Example
    -------
    >>> decoding_options({"beam_size": 8, "lm_weight": 0.3}, decoder="beam",
    ...                  lm_weight=None)
    {'decoder': 'beam', 'beam_size': 8, 'kenlm_model_path': None, 'lm_weight': 0.3, 'word_bonus': 1.0, 'lexicon': None}
    """
    unknown = sorted(set(given) - set(DECODING_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown decoding option {unknown[0]!r}; "
            f"valid: {', '.join(DECODING_DEFAULTS)}"
        )
    options = {}
    for key, default in DECODING_DEFAULTS.items():
        value = given.get(key)
        if value is None:
            value = hparams.get(key)
        options[key] = default if value is None else value
    beam = options.get("beam_size")
    if beam is not None and (isinstance(beam, bool) or not beam >= 1):
        raise UserValueError(
            f"--beam_size={beam}: the beam must keep at least 1 prefix "
            "(e.g. --beam_size=20)"
        )
    return options
