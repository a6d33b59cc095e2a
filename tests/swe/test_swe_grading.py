"""FAIL_TO_PASS / PASS_TO_PASS / flaky / regression rules on hand-written test statuses."""

from __future__ import annotations

import pytest

from skycurate.stages.swe.grading import classify, grade_patch

P, F, E = "PASSED", "FAILED", "ERROR"


def test_fail_to_pass_and_pass_to_pass():
    pre = {"t::a": F, "t::b": P, "t::c": P}
    post = {"t::a": P, "t::b": P, "t::c": P}
    v = classify(pre, [post, post, post])
    assert v.valid and v.fail_to_pass == ["t::a"] and v.pass_to_pass == ["t::b", "t::c"]


def test_tests_not_collected_before_the_fix_count_as_fail_to_pass():
    # test_patch adds tests of a function the fix introduces: pytest errors on the file before.
    pre = {"tests/test_new.py": E, "tests/test_old.py::test_x": P}
    post = {"tests/test_new.py::test_y": P, "tests/test_old.py::test_x": P}
    v = classify(pre, [post])
    assert v.valid and v.fail_to_pass == ["tests/test_new.py::test_y"]
    assert v.pass_to_pass == ["tests/test_old.py::test_x"]


def test_flaky_test_rejects_and_is_recorded():
    pre = {"a": F, "b": P}
    v = classify(pre, [{"a": P, "b": P}, {"a": P, "b": F}, {"a": P, "b": P}])
    assert v.reason == "flaky_tests" and v.flaky == ["b"] and "b" not in v.pass_to_pass


def test_regression_rejects():
    v = classify({"a": F, "b": P}, [{"a": P, "b": F}] * 3)
    assert v.reason == "p2p_regression" and v.regressed == ["b"]


def test_regression_when_a_passing_test_disappears_after_the_patch():
    v = classify({"a": F, "b": P}, [{"a": P}])
    assert v.reason == "p2p_regression" and v.regressed == ["b"]


def test_empty_fail_to_pass_rejects_with_the_still_failing_tests():
    v = classify({"a": F, "b": P}, [{"a": F, "b": P}] * 3)
    assert v.reason == "no_fail_to_pass" and "a" in v.detail and not v.fail_to_pass


def test_a_test_must_pass_in_every_post_run():
    v = classify({"a": F}, [{"a": P}, {"a": P}, {"a": E}])
    assert v.reason == "flaky_tests"
    with pytest.raises(ValueError):
        classify({"a": F}, [])


def test_a_candidate_patch_is_resolved_only_if_every_f2p_and_p2p_test_passes():
    g = grade_patch(["t::new"], ["t::old1", "t::old2"], {"t::new": P, "t::old1": P, "t::old2": "XFAIL"})
    assert g.resolved and (g.f2p_passed, g.f2p_total, g.p2p_passed, g.p2p_total) == (1, 1, 2, 2) and g.failing == []
    g = grade_patch(["t::new"], ["t::old1", "t::old2"], {"t::new": P, "t::old1": F})   # old2 not even collected
    assert not g.resolved and g.failing == ["t::old1", "t::old2"] and (g.f2p_passed, g.p2p_passed) == (1, 0)
    g = grade_patch(["t::new"], [], {"t::new": E})
    assert not g.resolved and g.failing == ["t::new"]


def test_collection_errors_are_the_modules_pytest_could_not_import():
    from skycurate.stages.swe.grading import collection_errors

    assert collection_errors({"tests/test_a.py": E, "tests/test_b.py::test_x": E, "tests/test_c.py::t": F,
                              "tests/test_d.py": P}) == ["tests/test_a.py"]
    assert collection_errors({"t::a": P}) == []


def test_ids_that_change_between_runs_are_unstable_not_flaky():
    """marshmallow parametrizes a test with the current time: each run has its own id."""
    pre = {"t::a": F, "t::b": P, "t::when[17:28:11]": P}
    posts = [{"t::a": P, "t::b": P, "t::when[17:28:12]": P}, {"t::a": P, "t::b": P, "t::when[17:28:13]": P},
             {"t::a": P, "t::b": P, "t::when[17:28:14]": P}]
    v = classify(pre, posts)
    assert v.valid and v.fail_to_pass == ["t::a"] and v.pass_to_pass == ["t::b"] and v.flaky == []
    assert v.unstable == ["t::when[17:28:12]", "t::when[17:28:13]", "t::when[17:28:14]", "t::when[17:28:11]"]
    assert v.regressed == []                       # the pre run's id is not a test that stopped passing
    # a test the pre run knows that goes missing from one post run is still flaky (a crash, not a new id)
    v = classify({"t::a": F, "t::b": P}, [{"t::a": P, "t::b": P}, {"t::a": P}, {"t::a": P, "t::b": P}])
    assert v.reason == "flaky_tests" and v.flaky == ["t::b"]
