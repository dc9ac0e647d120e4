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


@pytest.mark.parametrize(("move", "said"), [
    (dict(source="cat/a.png", target="../../outside/a.png"), "../../outside/a.png: outside the dataset folder"),
    (dict(source="/etc/passwd", target="dog/passwd"), "/etc/passwd: expected a path relative to the dataset folder"),
    (dict(source="cat/a.png", target="dog/../../x.png"), "dog/../../x.png: outside the dataset folder"),
    (dict(source="cat/a.png", target="cat.png"), "cat.png: not a file of class folder 'dog'"),
    (dict(source="dog/a.png", target="dog/a.png"), "dog/a.png: not a file of class folder 'cat'"),
])
def test_a_hand_made_move_outside_its_dataset_is_refused_on_undo_and_redo(root, tmp_path, move, said):
    (tmp_path / "outside").mkdir()
    victim = tmp_path / "outside" / "a.png"
    victim.write_bytes(b"not the studio's")
    bad = Move(root, move["source"], move["target"], "cat", "dog")
    for action in (undo, redo):
        with pytest.raises(RelabelError) as refused:
            action(bad)
        assert said in str(refused.value)
    assert victim.read_bytes() == b"not the studio's" and (root / "cat" / "a.png").read_bytes() == b"cat-a"


def test_a_project_whose_undo_journal_leaves_its_dataset_keeps_the_good_moves_only(root, tmp_path):
    import json

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.model.spec import resolve_spec
    from cnnstudio.core.project import Project, read_project, write_project

    registry = load_registry()
    good = move_to_class(root, "cat/a.png", "dog")
    path = tmp_path / "p.cnnstudio.json"
    write_project(path, Project(resolve_spec(registry, "scratch"), root, moves=[good]))
    data = json.loads(path.read_text())
    data["moves"] += [
        {"root": "/", "source": "etc/hosts", "target": "tmp/hosts", "old_class": "etc", "new_class": "tmp"},
        {"root": str(root), "source": "cat/x.png", "target": "../x.png", "old_class": "cat", "new_class": "dog"},
        {"root": str(root)},
    ]
    path.write_text(json.dumps(data))
    project, _ = read_project(path, registry)
    assert project.moves == [good]
    assert project.warnings == [f"{path}: 3 of the image moves could not be undone from here (outside the "
                                "project's dataset folder, or not a move) and were left out"]
