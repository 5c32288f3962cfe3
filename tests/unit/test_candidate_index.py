"""CandidateIndex: the same candidates as a plain band dictionary, through inserts, merges and removals."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import CandidateIndex, HashArena, MatchConfig, PackedBands, compare

FP = FingerprintConfig(num_perm=32)
BANDS = 8


def signatures(count: int, seed: int) -> np.ndarray:
    """Random signatures over few values, so that bands collide often."""
    return np.random.default_rng(seed).integers(0, 6, size=(count, FP.num_perm), dtype=np.uint32)


def hashes_of(i: int) -> np.ndarray:
    return np.unique(np.random.default_rng(i).integers(0, 2**32, size=i % 50, dtype=np.uint32))


def expected(held: dict[int, np.ndarray], signature: np.ndarray, rows: int, limit: int | None = None) -> list[str]:
    """Keys sharing a band (r values) with the signature, in insertion order: the definition of a candidate.
    With ``limit``, only the newest ``limit`` of each band's bucket count."""
    def band(s: np.ndarray, b: int) -> bytes:
        return s[b * rows:(b + 1) * rows].tobytes()
    found: set[int] = set()
    for b in range(BANDS):
        bucket = [i for i, other in held.items() if band(other, b) == band(signature, b)]
        found.update(bucket if limit is None else bucket[-limit:])
    return [f"a{i}" for i in held if i in found]


UNLIMITED = 10**9


@pytest.mark.parametrize("rows", [1, 3])
def test_candidates_match_the_definition_through_merges_and_compactions(rows: int) -> None:
    index = CandidateIndex(FP, MatchConfig(num_bands=BANDS, rows_per_band=rows, bucket_limit=UNLIMITED))
    sigs = signatures(6000, seed=rows)
    held: dict[int, np.ndarray] = {}
    for i, signature in enumerate(sigs[:5000]):
        index.insert(f"a{i}", signature, hashes_of(i))
        held[i] = signature
        if i % 3 == 0 and i > 100:  # removals enough to trigger compactions
            index.remove(f"a{i - 100}")
            del held[i - 100]
    assert len(index) == len(held)
    for probe in sigs[5000:5040]:
        assert index.find_candidates(probe) == expected(held, probe, rows)
    for i in list(held)[:200]:
        assert np.array_equal(index.shingle_hashes(f"a{i}"), hashes_of(i))
    key, hashes = index.candidates(sigs[4999])[-1]
    assert key == "a4999" and np.array_equal(hashes, hashes_of(4999))


@pytest.mark.parametrize("rows", [1, 3])
def test_a_query_takes_the_newest_of_each_bucket_up_to_the_limit(rows: int) -> None:
    """Buckets of ~800 entries (6 values per band) spread over the dict and both sorted runs."""
    limit = 7
    index = CandidateIndex(FP, MatchConfig(num_bands=BANDS, rows_per_band=rows, bucket_limit=limit))
    sigs = signatures(5500, seed=10 + rows)
    held: dict[int, np.ndarray] = {}
    for i, signature in enumerate(sigs[:5000]):
        index.insert(f"a{i}", signature, hashes_of(i))
        held[i] = signature
    for probe in sigs[5000:5030]:
        found = index.find_candidates(probe)
        assert found == expected(held, probe, rows, limit)
        assert 0 < len(found) <= limit * BANDS


def test_insert_many_is_the_same_index_as_inserting_one_by_one() -> None:
    config = MatchConfig(num_bands=BANDS, rows_per_band=1)
    sigs = signatures(3000, seed=7)
    one, bulk = CandidateIndex(FP, config), CandidateIndex(FP, config)
    for i, signature in enumerate(sigs[:2000]):
        one.insert(f"a{i}", signature, hashes_of(i))
    bulk.insert_many([f"a{i}" for i in range(1500)], sigs[:1500], [hashes_of(i) for i in range(1500)])
    for i in range(1500, 2000):
        bulk.insert(f"a{i}", sigs[i], hashes_of(i))
    for probe in sigs[2000:2100]:
        assert bulk.find_candidates(probe) == one.find_candidates(probe)


def test_packed_bands_refuse_ordinals_beyond_their_bits() -> None:
    bands = PackedBands(23)
    assert bands.max_ordinal == 2**27 - 1  # 5 bits of band, 32 of value, 27 of ordinal


def test_arena_gives_back_what_it_was_given_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HashArena, "CHUNK", 64)
    arena = HashArena()
    stored = [(arena.add(hashes_of(i)), hashes_of(i)) for i in range(40)]
    assert all(np.array_equal(arena.view(at, len(h)), h) for at, h in stored)
    assert arena.used == sum(len(h) for _, h in stored)


def test_compare_counts_shared_hashes() -> None:
    a = np.array([1, 3, 5, 7], dtype=np.uint32)
    b = np.array([3, 4, 5], dtype=np.uint32)
    similarity = compare(a, b)
    assert (similarity.jaccard, similarity.containment) == (2 / 5, 2 / 3)
    assert compare(a, np.empty(0, dtype=np.uint32)).score == 0.0
