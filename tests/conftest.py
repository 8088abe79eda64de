"""Shared test helpers.

Real media and official parity fixtures live outside the repository, in ``../shared`` (next to the
project root). Tests that need them skip with a reason when that folder is absent, as on a user's
fresh clone. ``INTERNVIDEO2_FIXTURES`` overrides the fixture root.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTERNVIDEO2_SHARED", ROOT.parent / "shared"))
ASSETS = SHARED / "assets"
FIXTURES = Path(os.environ.get("INTERNVIDEO2_FIXTURES", SHARED / "fixtures" / "official"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def assets() -> Path:
    """Folder of real third-party clips (``../shared/assets``); skips when absent."""
    if not ASSETS.is_dir():
        pytest.skip(f"real media folder {ASSETS} is absent (it is not part of the repository)")
    return ASSETS


def asset(rel: str) -> Path:
    """Path of one real asset, skipping the calling test when it is absent."""
    p = ASSETS / rel
    if not p.is_file():
        pytest.skip(f"real media file {p} is absent (it is not part of the repository)")
    return p


def fixture_dirs() -> list[Path]:
    """Every parity-fixture folder under the fixture root (empty when the root is absent)."""
    if not FIXTURES.is_dir():
        return []
    return sorted(p for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


OTHER_UID = 65534  # nobody


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run so that file permissions bind it. Root bypasses them, so as root the command runs without
    any capability (``setpriv --bounding-set=-all``): files owned by :data:`OTHER_UID` with owner-only modes
    are then out of its reach, like another user's. Skips the test when that is impossible."""
    import shutil as _shutil

    if os.geteuid() != 0:
        return cmd
    setpriv = _shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): file permissions cannot be tested")
    return [setpriv, "--bounding-set=-all", *cmd]


def foreign(path: Path, mode: int) -> Path:
    """Make ``path`` another user's (:data:`OTHER_UID`) with ``mode`` (as root; a no-op check otherwise)."""
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
    os.chmod(path, mode)
    return path


def pytest_collection_modifyitems(config, items):
    """Run the video-search tests last. Their ANN tests load faiss, whose bundled OpenMP/OpenBLAS thread pools
    make a later ``fork`` (DataLoader workers of other tests, in this same process) deadlock in the child;
    in the package only ``search`` uses faiss, and it never forks workers afterwards."""
    def last(item) -> tuple[bool, bool]:
        name = Path(str(item.fspath)).name
        return name.startswith("test_search"), name == "test_search.py"  # the ANN tests at the very end

    items.sort(key=last)
