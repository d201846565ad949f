"""An embedded upsert is cut into pieces of bounded size, each checked against the disk margin."""

from __future__ import annotations

from backend.adapters.store import ChunkPoint, _pieces, written_bytes


def point(i: int, sentences: int) -> ChunkPoint:
    return ChunkPoint(f"p{i}", [0.1] * 384, {"text": "слово " * 50}, ([1, 2, 3], [0.1, 0.2, 0.3]),
                      sentences=[[0.2] * 384] * sentences or None)  # fmt: skip


def test_sentence_vectors_and_text_count_in_the_size() -> None:
    plain, with_sentences = written_bytes(point(0, 0)), written_bytes(point(0, 6))
    assert plain > 10 * 384 + 3 * len("слово " * 50)  # the vector and the payload's UTF-8 bytes
    assert with_sentences - plain == 6 * 384 * 10


def test_pieces_keep_the_order_and_stay_under_the_size_unless_one_point_is_larger() -> None:
    points = [point(i, i % 9) for i in range(60)]
    pieces = _pieces(points, 100_000)
    assert [p for piece, _ in pieces for p in piece] == points
    assert len(pieces) > 1
    for piece, size in pieces:
        assert size == sum(written_bytes(p) for p in piece)
        assert size <= 100_000 or len(piece) == 1
    assert _pieces(points, 1) == [([p], written_bytes(p)) for p in points]
    assert _pieces([], 100) == []
