"""`make test` fails when the suite changes the git tree (scripts/check-clean-tree.sh), and the
console tests write their screenshots to an ignored folder unless asked to refresh the docs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.console.conftest import screenshots_folder

REPOSITORY = Path(__file__).parents[1]
CHECK = REPOSITORY / "scripts" / "check-clean-tree.sh"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone as CI has it: committed, clean, with an ignored folder."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / ".gitignore").write_text("var/\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "shot.png").write_bytes(b"tracked")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    return tmp_path


def check(repo: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(CHECK), "sh", "-c", script], cwd=repo, capture_output=True, text=True
    )


def test_a_suite_that_writes_only_ignored_files_passes(repo: Path) -> None:
    result = check(repo, "mkdir -p var/screenshots && echo x > var/screenshots/a.png")
    assert result.returncode == 0, result.stderr


def test_a_suite_that_rewrites_a_tracked_file_fails(repo: Path) -> None:
    result = check(repo, "echo changed > docs/shot.png")
    assert result.returncode == 1
    assert "changed the working tree" in result.stderr
    assert "docs/shot.png" in result.stderr


def test_a_suite_that_leaves_a_new_file_fails(repo: Path) -> None:
    assert check(repo, "echo x > stray.txt").returncode == 1


def test_an_already_dirty_tree_is_judged_by_what_the_suite_did(repo: Path) -> None:
    (repo / "docs" / "shot.png").write_bytes(b"edited by the developer")
    assert check(repo, "true").returncode == 0
    assert check(repo, "echo again > docs/shot.png").returncode == 1


def test_the_suites_own_failure_is_kept(repo: Path) -> None:
    assert check(repo, "exit 3").returncode == 3


def test_console_screenshots_go_to_an_ignored_folder_unless_refreshing() -> None:
    folder = screenshots_folder({})
    ignored = subprocess.run(["git", "check-ignore", "-q", str(folder / "x.png")], cwd=REPOSITORY)
    assert ignored.returncode == 0, f"{folder} is not ignored by git"
    refresh = screenshots_folder({"MEDIAPLANE_REFRESH_SCREENSHOTS": "1"})
    assert refresh == REPOSITORY / "docs" / "screenshots"
