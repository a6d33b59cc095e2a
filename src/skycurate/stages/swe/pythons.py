"""Which Python a candidate is validated on, in the order the environment search tries them.

One Python for every repository and every year does not work: code from 2015-2021 pins libraries
without wheels for today's Python and imports modules that were removed (``collections.Mapping``,
``imp``, ``distutils``), and new code may require 3.12+. SWE-rebench and RepoLaunch pick the
version per repository and date; Skywork-SWE's default is 3.9. The rule here, with the versions
the sandbox can build (``sandbox.SUPPORTED_PYTHONS``, one Debian release each):

1. ``requires-python`` at the base commit decides which versions are allowed (an invalid
   specifier allows all, as pip ignores it);
2. the first choice is the newest allowed version that had been out for ``ADOPTION`` (six months:
   projects and their dependencies catch up with a new Python within that) before the base commit,
   but not newer than the default (3.11): newer versions only come first when the project's
   ``requires-python`` excludes the older ones;
3. the other allowed versions follow, nearest first (older before newer at equal distance),
   so an install failure or a test module that no longer imports falls back to a neighbour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from skycurate.schemas.swe import AUTO_PYTHON as AUTO
from skycurate.schemas.swe import DEFAULT_PYTHON, PYTHON_RELEASED

ADOPTION = timedelta(days=183)
__all__ = ["ADOPTION", "AUTO", "DEFAULT_PYTHON", "PYTHON_RELEASED", "allowed_pythons", "python_order"]


def allowed_pythons(requires_python: str | None, versions: list[str]) -> list[str]:
    """The versions ``requires_python`` admits (all of them when it is absent or invalid)."""
    if not requires_python:
        return list(versions)
    try:
        spec = SpecifierSet(requires_python.strip().rstrip(","))
    except InvalidSpecifier:
        return list(versions)
    return [v for v in versions if spec.contains(f"{v}.0", prereleases=True)]


def python_order(requires_python: str | None, commit_date: datetime | None, setting: str = AUTO,
                 default: str = DEFAULT_PYTHON) -> list[str]:
    """The Pythons to try for a commit, first choice first (see the module docstring). A fixed
    ``setting`` (e.g. ``"3.9"``) is the only one tried; when ``requires-python`` admits none of the
    versions, the default comes back alone, so that the precheck records why it cannot run."""
    if setting != AUTO:
        return [setting]
    versions = sorted(PYTHON_RELEASED, key=lambda v: tuple(map(int, v.split("."))))
    allowed = allowed_pythons(requires_python, versions)
    if not allowed:
        return [default]
    day = commit_date.astimezone(UTC).date() if commit_date is not None else None
    ceiling = versions.index(default)
    ripe = [v for v in allowed if versions.index(v) <= ceiling
            and (day is None or PYTHON_RELEASED[v] + ADOPTION <= day)]
    first = ripe[-1] if ripe else allowed[0]
    i = versions.index(first)
    rest = sorted((v for v in allowed if v != first),
                  key=lambda v: (abs(versions.index(v) - i), versions.index(v)))
    return [first, *rest]
