"""constraints.txt pins every dependency `make setup` installs, inside pyproject's ranges.

A dependency added to pyproject.toml without `make lock` would be installed at whatever version
the registry has that day, which is how a fresh clone's CI goes red on a release nobody tested.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["pg"]]


def test_every_dependency_is_pinned_within_its_range_except_torch() -> None:
    pins = _pins()
    for req in _requirements():
        name = _name(req.name)
        if name == "torch":
            # the Makefile installs torch==2.13.0 itself; a pin here would say +cpu and stop a
            # GPU box from installing its CUDA build
            assert name not in pins
            continue
        assert name in pins, f"{req.name} is in pyproject.toml but not in constraints.txt: run `make lock`"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_the_makefile_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    assert re.search(r"^\$\(VENV\)/\.installed: .*constraints\.txt", makefile, re.M), (
        "a changed constraints.txt must make `make setup` install again"
    )
