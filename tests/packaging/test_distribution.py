"""The sdist and the wheel carry the license that pyproject.toml declares.

Both are built from a copy of the project (setuptools writes build/ and *.egg-info next
to the sources) with the installed setuptools, through the same PEP 517 hooks pip calls,
without build isolation and so without the network.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = """
from setuptools import build_meta
print(build_meta.build_sdist("dist"))
print(build_meta.build_wheel("dist"))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("eventbinder")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for package in ("binder", "binders"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    result = subprocess.run(
        [sys.executable, "-c", BUILD],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    return source / "dist"


def project() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return table


def test_license_file_is_the_apache_license() -> None:
    assert project()["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[:2] == ["Apache License", "Version 2.0, January 2004"]
    assert "END OF TERMS AND CONDITIONS" in lines
    assert lines[-1] == "limitations under the License."


def test_wheel_carries_the_license_and_declares_it(dist: Path) -> None:
    version = project()["version"]
    [wheel] = dist.glob(f"eventbinder-{version}-*.whl")
    info = f"eventbinder-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    assert metadata["License-Expression"] == project()["license"]
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata.get_all("Classifier") == project()["classifiers"]


def test_sdist_carries_the_license(dist: Path) -> None:
    version = project()["version"]
    [sdist] = dist.glob(f"eventbinder-{version}.tar.gz")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"eventbinder-{version}/LICENSE")
        assert member is not None
        assert member.read() == (REPO / "LICENSE").read_bytes()
