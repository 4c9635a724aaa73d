"""How written records name paths: relative inside the working directory, as given outside it."""

from pathlib import Path

from qa.files import repository_path


def test_a_path_inside_the_working_directory_is_written_relative(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert repository_path(tmp_path / "models" / "m") == str(Path("models") / "m")
    assert repository_path("models/m") == str(Path("models") / "m")


def test_a_path_outside_it_is_written_as_given(tmp_path, monkeypatch):
    inside = tmp_path / "repo"
    inside.mkdir()
    monkeypatch.chdir(inside)
    outside = tmp_path / "elsewhere" / "m"
    assert repository_path(outside) == str(outside)
