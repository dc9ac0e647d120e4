import os

import pytest

from cnnstudio.core.data.relabel import Move, RelabelError, move_to_class, redo, undo


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "data"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(b"cat-a")
    (root / "cat" / "b.png").write_bytes(b"cat-b")
    (root / "dog" / "b.png").write_bytes(b"dog-b")
    (root / "dog" / "b-2.png").write_bytes(b"dog-b2")
    return root


def test_move_puts_the_file_in_the_class_folder(root):
    move = move_to_class(root, "cat/a.png", "dog")
    assert isinstance(move, Move)
    assert (move.source, move.target, move.old_class, move.new_class) == ("cat/a.png", "dog/a.png", "cat", "dog")
    assert not (root / "cat" / "a.png").exists()
    assert (root / "dog" / "a.png").read_bytes() == b"cat-a"


def test_a_name_clash_gets_a_free_name_and_overwrites_nothing(root):
    move = move_to_class(root, "cat/b.png", "dog")
    assert move.target == "dog/b-3.png"
    assert (root / "dog" / "b.png").read_bytes() == b"dog-b"
    assert (root / "dog" / "b-2.png").read_bytes() == b"dog-b2"
    assert (root / "dog" / "b-3.png").read_bytes() == b"cat-b"


@pytest.mark.parametrize(("rel", "cls"), [
    ("../outside.png", "dog"), ("cat/../../outside.png", "dog"), ("cat/a.png", ".."),
    ("cat/a.png", "../elsewhere"), ("cat/a.png", "bird"), ("cat/missing.png", "dog"), ("cat/a.png", "cat"),
])
def test_refused_moves_change_nothing(root, rel, cls):
    (root.parent / "outside.png").write_bytes(b"x")
    (root.parent / "elsewhere").mkdir()
    before = sorted(p.relative_to(root.parent) for p in root.parent.rglob("*"))
    with pytest.raises(RelabelError):
        move_to_class(root, rel, cls)
    assert sorted(p.relative_to(root.parent) for p in root.parent.rglob("*")) == before


def test_undo_restores_exactly(root):
    src = root / "cat" / "b.png"
    os.utime(src, (1_000_000, 1_000_000))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    move = move_to_class(root, "cat/b.png", "dog")
    assert undo(move) == move.source_path
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert src.read_bytes() == b"cat-b" and src.stat().st_mtime == 1_000_000
    with pytest.raises(RelabelError):  # undone already: the moved file is gone
        undo(move)


def test_undo_refuses_to_overwrite(root):
    move = move_to_class(root, "cat/a.png", "dog")
    (root / "cat" / "a.png").write_bytes(b"new")
    with pytest.raises(RelabelError):
        undo(move)
    assert (root / "cat" / "a.png").read_bytes() == b"new"
    assert (root / "dog" / "a.png").read_bytes() == b"cat-a"


def test_redo_moves_the_file_again_under_its_name_or_a_free_one(root):
    move = move_to_class(root, "cat/a.png", "dog")
    undo(move)
    assert redo(move) == move and (root / "dog" / "a.png").read_bytes() == b"cat-a"
    undo(move)
    (root / "dog" / "a.png").write_bytes(b"another")  # the name was taken meanwhile
    again = redo(move)
    assert again.target == "dog/a-2.png" and (root / "dog" / "a-2.png").read_bytes() == b"cat-a"
    assert (root / "dog" / "a.png").read_bytes() == b"another" and not (root / "cat" / "a.png").exists()
    with pytest.raises(RelabelError):  # moved already: nothing to move again
        redo(again)
