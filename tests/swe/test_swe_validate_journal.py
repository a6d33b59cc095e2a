"""The validation journal: what it keys an outcome on, when it reuses one, and what it never holds.

``validate_all`` runs against the real daemon (it makes sure the base image is there); the candidates'
own validation is replaced by a recorder, since the journal, not Docker, is under test here.
"""

from __future__ import annotations

import pytest

from skycurate import codehash as _code
from skycurate.sandbox import SandboxError
from skycurate.schemas.swe import ValidationConfig
from skycurate.stages.swe import validate as V

CFG = ValidationConfig(workers=1)
CANDIDATES = [{"instance_id": f"acme__calc-{n}", "repo": "acme/calc", "base_commit": f"{n:040x}", "patch": f"p{n}",
               "test_patch": f"t{n}", "test_files": ["tests/test_calc.py"]} for n in (1, 2)]


def test_the_key_holds_the_version_of_the_code_that_decides_an_outcome(monkeypatch):
    modules = _code.closure([V.__name__])
    assert {"skycurate.stages.swe.validate", "skycurate.stages.swe.grading", "skycurate.stages.swe.recipe",
            "skycurate.sandbox.run", "skycurate.sandbox.images"} <= modules
    before = V.outcome_key(CANDIDATES[0], CFG, "auto")
    assert V.outcome_key(CANDIDATES[0], CFG, "auto") == before
    monkeypatch.setattr(_code, "module_code_version", lambda module: "9.9+upgraded")
    assert V.outcome_key(CANDIDATES[0], CFG, "auto") != before


@pytest.fixture
def validations(monkeypatch, base_image):
    """Every ``validate_candidate`` call, by instance id; ``fail`` ids raise a daemon error once."""
    calls: list[str] = []
    fail: set[str] = set()

    def validate_candidate(c, cfg, log_dir, python="auto"):
        calls.append(c["instance_id"])
        if c["instance_id"] in fail:
            fail.discard(c["instance_id"])
            raise SandboxError("Docker daemon not reachable at unix:///var/run/docker.sock during sandbox run")
        return V._reject(c, V.STAGE_VALIDATE, "no_fail_to_pass", "nothing fails before the fix", log_dir)

    monkeypatch.setattr(V, "validate_candidate", validate_candidate)
    return calls, fail


def test_journalled_outcomes_are_reused_unless_the_code_changed_or_forced(validations, monkeypatch, tmp_path):
    calls, _ = validations
    first = V.validate_all(CANDIDATES, CFG, tmp_path)
    assert sorted(calls) == ["acme__calc-1", "acme__calc-2"]
    calls.clear()
    assert V.validate_all(CANDIDATES, CFG, tmp_path) == first and calls == []      # resumed: nothing redone
    assert V.validate_all(CANDIDATES, CFG, tmp_path, force=True) and len(calls) == 2   # --force redoes all
    calls.clear()
    monkeypatch.setattr(_code, "module_code_version", lambda module: "9.9+upgraded")
    V.validate_all(CANDIDATES, CFG, tmp_path)
    assert len(calls) == 2                                      # an upgrade does not reuse older outcomes


def test_a_daemon_failure_is_no_outcome_and_the_next_run_retries_it(validations, tmp_path):
    calls, fail = validations
    fail.add("acme__calc-2")
    with pytest.raises(SandboxError, match="Docker daemon not reachable"):
        V.validate_all(CANDIDATES, CFG, tmp_path)
    assert calls == ["acme__calc-1", "acme__calc-2"]
    calls.clear()
    outcomes = V.validate_all(CANDIDATES, CFG, tmp_path)
    assert calls == ["acme__calc-2"]                            # only the interrupted candidate again
    assert [o["row"]["reason"] for o in outcomes] == ["no_fail_to_pass", "no_fail_to_pass"]
