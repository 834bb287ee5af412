"""The book build trains every pre-trained network a chapter loads, and only known ones."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

from cnnlib.torch.pretrain import PRETRAINED  # noqa: E402


def test_every_network_the_chapters_name_is_a_known_entry():
    used = build_book.pretrained_used()
    assert "small_resnet_shapes" in used  # chapter 12's source network
    assert set(used) <= set(PRETRAINED)


def test_the_patterns_find_both_ways_of_asking(tmp_path, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    monkeypatch.setattr(build_book, "ROOT", tmp_path)
    (book / "a.md").write_text("x = ensure_pretrained('small_resnet_shapes', progress=False)\n")
    assert build_book.pretrained_used() == ["small_resnet_shapes"]
    (book / "b.md").write_text('m = models.small_resnet(weights="DEFAULT")\n')
    assert build_book.pretrained_used() == ["small_resnet", "small_resnet_shapes"]
    (book / "a.md").write_text("m = models.small_resnet(num_classes=8, weights=path)\n")
    (book / "b.md").write_text("nothing pre-trained here\n")
    assert build_book.pretrained_used() == [] and not build_book.chapters_use_pretrained()
