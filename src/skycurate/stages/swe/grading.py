"""Grading: from test statuses to a verdict. For a mined candidate: FAIL_TO_PASS, PASS_TO_PASS,
flaky tests, and why an instance is rejected (``classify``); for a candidate patch on a
validated instance: resolved or not (``grade_patch``). Pure: the sandbox runs the tests, this
decides what the runs mean.

Conventions (SWE-bench, SWE-bench-Live):

- pre = the repo at base_commit with ``test_patch`` applied; post = the same plus the gold ``patch``,
  run ``post_repeats`` times.
- A test *passes* post only if it passed in every post run (PASSED, or XFAIL: an expected failure
  that failed as expected).
- FAIL_TO_PASS: passes post, and did not pass pre (failed, errored, or was not even collected:
  a test added by ``test_patch`` for a function the fix introduces fails at import time, which
  pytest reports once per file, not per test).
- PASS_TO_PASS: passed pre and passes post.
- Flaky: a test whose outcome differs between post runs. Any flaky test rejects the instance
  (``flaky_tests``); the tests are recorded. A test id that is absent from the pre run and from
  some post run is *unstable* (its id changes between runs: parametrized by the clock or a
  random value): left out of every list, not flaky.
- Regression: passed pre, fails in every post run. Rejects (``p2p_regression``).
- Empty FAIL_TO_PASS rejects (``no_fail_to_pass``): the tests do not show the bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PASS_STATUSES = frozenset({"PASSED", "XFAIL"})


@dataclass
class Verdict:
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    flaky: list[str]
    regressed: list[str]
    unstable: list[str] = field(default_factory=list)   # ids that exist in some post runs only
    reason: str | None = None            # None = valid instance
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.reason is None


def _passed(status: str | None) -> bool:
    return status in PASS_STATUSES


def classify(pre: Mapping[str, str], posts: Sequence[Mapping[str, str]]) -> Verdict:
    """The verdict of one instance from its pre run and its post runs (test id -> status)."""
    if not posts:
        raise ValueError("at least one post run is needed")
    seen = set().union(*[set(p) for p in posts])
    # A test id absent from the pre run and from some post run is not one test that flips: its id
    # changes from run to run (parametrized by the clock, a random seed, an object address), so it
    # can be neither FAIL_TO_PASS nor PASS_TO_PASS, and it does not make the instance flaky.
    unstable = sorted(t for t in seen if t not in pre and any(t not in p for p in posts))
    # ... and the pre run's own id of that test (same name, other parameters) never shows up again
    families = {t.split("[", 1)[0] for t in unstable}
    unstable += sorted(t for t in pre if t not in seen and t.split("[", 1)[0] in families)
    tests = sorted(seen - set(unstable))
    flaky = [t for t in tests if len({_passed(p.get(t)) for p in posts}) > 1]
    always = [t for t in tests if t not in flaky and all(_passed(p.get(t)) for p in posts)]
    f2p = [t for t in always if not _passed(pre.get(t))]
    p2p = [t for t in always if _passed(pre.get(t))]
    regressed = sorted(t for t in pre if _passed(pre[t]) and t not in flaky and t not in unstable
                       and not any(_passed(p.get(t)) for p in posts))
    verdict = Verdict(f2p, p2p, flaky, regressed, unstable,
                      counts={"tests": len(tests), "f2p": len(f2p), "p2p": len(p2p), "flaky": len(flaky),
                              "regressed": len(regressed), "unstable": len(unstable)})
    if flaky:
        verdict.reason, verdict.detail = "flaky_tests", ", ".join(flaky[:10])
    elif regressed:
        verdict.reason, verdict.detail = "p2p_regression", ", ".join(regressed[:10])
    elif not f2p:
        failing = [t for t in tests if not _passed(posts[0].get(t))]
        verdict.reason = "no_fail_to_pass"
        verdict.detail = ("the gold patch leaves these tests failing: " + ", ".join(failing[:10]) if failing
                          else "no test fails before the gold patch")
    return verdict


@dataclass
class PatchGrade:
    """How a candidate patch did on a validated instance (SWE-bench's "resolved")."""

    resolved: bool
    f2p_passed: int
    f2p_total: int
    p2p_passed: int
    p2p_total: int
    failing: list[str]


def grade_patch(fail_to_pass: Sequence[str], pass_to_pass: Sequence[str], statuses: Mapping[str, str]) -> PatchGrade:
    """Resolved only if every FAIL_TO_PASS and every PASS_TO_PASS test passes with the patch."""
    f2p, p2p = list(fail_to_pass), list(pass_to_pass)
    failing = sorted(t for t in f2p + p2p if not _passed(statuses.get(t)))
    return PatchGrade(resolved=not failing, f2p_passed=sum(_passed(statuses.get(t)) for t in f2p), f2p_total=len(f2p),
                      p2p_passed=sum(_passed(statuses.get(t)) for t in p2p), p2p_total=len(p2p), failing=failing)


def collection_errors(statuses: Mapping[str, str]) -> list[str]:
    """Test modules pytest could not even import (``ERROR path/test_x.py``, no ``::``). With the
    gold patch applied that is the environment's fault (a pytest or Python too new for the tests),
    not a verdict on the fix: the validation tries the next environment."""
    return sorted(t for t, s in statuses.items() if s == "ERROR" and "::" not in t)
