"""Per-image outcomes in results.json (``pni.evaluation.per_image``): they round-trip through the file,
agree with the stored accuracies, stay small, and older files without them still load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pni
from pni.evaluation import per_image
from pni.evaluation.evaluator import Evaluation, EvaluationError, evaluate
from pni.reports import write_evaluation


@pytest.fixture(scope="module")
def data():
    return pni.load_dataset("mnist-sample", "test").subset(45)   # not a multiple of 8


@pytest.mark.parametrize("votes", [1, 3])
def test_per_image_outcomes_round_trip_and_match_the_accuracies(noisy_model, data, tmp_path, votes):
    result = evaluate(noisy_model, data, ["clean", "fgsm"], trials=2, eps=0.1, votes=votes)
    write_evaluation(result, tmp_path, "PNI-W")
    saved = json.loads((tmp_path / "results.json").read_text())
    block = saved["per_image"]
    assert block["encoding"] == ("packbits" if votes == 1 else "counts-u8-zlib") and block["n"] == 45
    assert block["labels_sha256"] == per_image.labels_digest(data.tensors()[1])
    assert set(block["outcomes"]) == {"with_noise", "without_noise"}
    for setting, per_attack in saved["accuracy_per_trial"].items():
        assert set(block["outcomes"][setting]) == set(per_attack) == {"clean", "fgsm", "worst-case"}
        for name, per_trial in per_attack.items():
            shares = per_image.shares(saved, setting, name)
            assert shares.shape == (2, 45)
            np.testing.assert_allclose(shares.mean(1), per_trial, atol=1e-6)
            np.testing.assert_allclose(shares, result.fractions[setting][name].double().numpy(), atol=1e-6)
    again = Evaluation.from_json(saved)
    assert again.labels_sha256 == result.labels_sha256
    for setting, per_attack in result.fractions.items():
        for name, fractions in per_attack.items():
            assert torch.allclose(again.fractions[setting][name], fractions)
            if votes == 1:
                assert torch.equal(again.correct[setting][name], result.correct[setting][name])
    assert again.to_json()["per_image"] == block                   # written again, byte for byte


def test_per_image_block_is_small():
    rng = np.random.default_rng(0)
    shares = {s: {a: rng.random((5, 1000)) < 0.5 for a in ("clean", "pgd", "fgsm")}
              for s in ("with_noise", "without_noise")}
    text = json.dumps(per_image.block(shares, 1000, 1, "0" * 16, subset=True))
    assert len(text) < 6000                                        # 30 trials x 168 characters
    assert len(per_image.encode(np.ones(1000))) == 168


def test_counts_encode_and_decode_shares_of_draws():
    shares = np.array([0.0, 0.1, 0.5, 1.0, 0.3])
    for votes in (10, 300):
        text = per_image.encode(shares, votes)
        np.testing.assert_allclose(per_image.decode(text, per_image.encoding_for(votes), 5, votes), shares)
    with pytest.raises(per_image.PerImageError, match="expected 6"):
        per_image.decode(per_image.encode(shares, 10), per_image.COUNTS_U8, 6, 10)
    with pytest.raises(per_image.PerImageError, match="packed bits"):
        per_image.decode(per_image.encode(np.ones(20)), per_image.PACKBITS, 40)
    with pytest.raises(per_image.PerImageError):
        per_image.decode("not base64!", per_image.PACKBITS, 3)
    assert issubclass(per_image.PerImageError, pni.errors.PNIError)


def test_older_results_without_per_image_still_load(noisy_model, data):
    saved = json.loads(json.dumps(evaluate(noisy_model, data, ["clean"], trials=1).to_json()))
    del saved["per_image"]
    old = Evaluation.from_json(saved)
    assert old.fractions == {} and old.correct == {} and old.labels_sha256 is None
    assert "per_image" not in old.to_json()
    assert per_image.shares(saved, "with_noise", "clean") is None and per_image.fingerprint(saved) is None


def test_a_damaged_per_image_block_is_an_evaluation_error(noisy_model, data):
    saved = json.loads(json.dumps(evaluate(noisy_model, data, ["clean"], trials=1).to_json()))
    saved["per_image"]["outcomes"]["with_noise"]["clean"] = ["AAAA"]
    with pytest.raises(EvaluationError, match="packed bits"):
        Evaluation.from_json(saved)
    assert per_image.shares(saved, "with_noise", "clean") is None    # the verdicts: unpaired
