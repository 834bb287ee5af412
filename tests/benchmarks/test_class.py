"""benchmarks/bench_class.py: the synthetic class has the announced mix of submissions."""

from __future__ import annotations

import json
from collections import Counter

from benchmarks.bench_class import make_class


def test_every_ten_students_hold_the_announced_mix(tmp_path):
    kinds = make_class(tmp_path, 20)
    assert Counter(kinds.values()) == {"correct": 8, "partial": 4, "buggy": 4, "hanging": 2,
                                       "broken": 2}
    texts = {s: (tmp_path / s / "a1-convolution" / "convolution.ipynb").read_text()
             for s in kinds}
    for student, kind in kinds.items():
        if kind == "broken":
            assert not texts[student].startswith("{\n") and "not a notebook" in texts[student]
        else:
            json.loads(texts[student])
    buggy = [texts[s] for s, k in kinds.items() if k == "buggy"]
    assert len(set(buggy)) == len(buggy)  # a different mistake each time
    hanging = [texts[s] for s, k in kinds.items() if k == "hanging"]
    assert all("while True" in t for t in hanging)
