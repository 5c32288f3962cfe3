"""consumers.evaluation agrees with the reference scorer in ../shared/eval/score.py."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from consumers.evaluation import score

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "score.py"


def reference_scorer():  # type: ignore[no-untyped-def]
    assert REFERENCE.is_file(), f"{REFERENCE} is missing: the evaluation kit must sit beside the repository"
    spec = importlib.util.spec_from_file_location("reference_score", REFERENCE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_the_reference_scorer(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    ids = [f"a{i}" for i in range(200)]
    gold = {i: f"c{rng.randrange(60)}" for i in ids}
    predicted = {i: f"s{rng.randrange(80)}" for i in ids if rng.random() < 0.95}  # some missing: singletons
    labels, predictions = tmp_path / "labels.jsonl", tmp_path / "predictions.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "cluster": c}) + "\n" for i, c in gold.items()))
    predictions.write_text("".join(json.dumps({"id": i, "story_id": s}) + "\n" for i, s in predicted.items()))

    reference = reference_scorer()
    expected_gold = reference.load_labels(str(labels))
    expected = reference.score(expected_gold, reference.load_predictions(str(predictions), expected_gold)[0])
    ours = score({i: json.dumps(c) for i, c in gold.items()}, predicted)

    assert ours.pairwise_f1 == pytest.approx(expected["f1"], abs=1e-12)
    assert ours.pairwise_precision == pytest.approx(expected["p"], abs=1e-12)
    assert ours.pairwise_recall == pytest.approx(expected["r"], abs=1e-12)
    assert ours.bcubed_f1 == pytest.approx(expected["bf"], abs=1e-12)
    assert ours.adjusted_rand_index == pytest.approx(expected["ari"], abs=1e-12)
