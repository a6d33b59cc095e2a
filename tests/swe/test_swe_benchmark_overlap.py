"""Mined data must not leak into public SWE benchmarks: the repository list and the
instance-level check against published instance files."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skycurate.errors import SkycurateError
from skycurate.schemas.swe import RepoFilter
from skycurate.schemas.swe_benchmarks import SWE_BENCH_REPOS, benchmarks_of, default_excluded_repos
from skycurate.stages.swe.benchmark_overlap import load_benchmark_instances


def test_the_default_exclusion_list_holds_the_twelve_swe_bench_source_repositories():
    assert len(SWE_BENCH_REPOS) == 12
    excluded = {r.lower() for r in RepoFilter().exclude}
    assert {"django/django", "sympy/sympy", "scikit-learn/scikit-learn", "astropy/astropy"} <= excluded
    assert excluded == {r.lower() for r in default_excluded_repos()}
    assert benchmarks_of("Django/Django") == ["SWE-bench", "SWE-bench Lite", "SWE-bench Verified"]
    assert benchmarks_of("pallets/click") == []


def test_instances_match_by_id_by_base_commit_and_by_pr_number_in_every_published_layout(tmp_path):
    live = tmp_path / "swe-bench-live.jsonl"      # SWE-bench layout, one object per line
    live.write_text("\n".join(json.dumps(r) for r in [
        {"instance_id": "acme__tool-12", "repo": "acme/tool", "base_commit": "a" * 40},
        {"instance_id": "other__lib-7", "repo": "other/lib", "base_commit": "b" * 40, "pull_number": 7},
    ]) + "\n")
    multi = tmp_path / "multi.json"               # Multi-SWE-bench layout: org + repo + number + base.sha
    multi.write_text(json.dumps([{"org": "Zed", "repo": "zz", "number": 99, "base": {"sha": "c" * 40}}]))
    rebench = tmp_path / "rebench.parquet"
    pq.write_table(pa.table({"instance_id": ["x__y-3"], "repo": ["x/y"], "base_commit": ["d" * 40]}), rebench)
    index = load_benchmark_instances([str(live), f"Multi-SWE-bench={multi}", str(rebench)])
    assert len(index) == 3                          # the Multi-SWE-bench row has no instance_id

    known, how = index.match("acme/tool", "f" * 40, "acme__tool-12")
    assert (known.benchmark, known.instance_id, how) == ("swe-bench-live", "acme__tool-12", "instance id")
    known, how = index.match("Other/Lib", "b" * 40, "other__lib-1000")
    assert (known.instance_id, how) == ("other__lib-7", "repository and base commit")
    known, how = index.match("zed/zz", "e" * 40, "zed__zz-99")
    assert (known.benchmark, how) == ("Multi-SWE-bench", "repository and PR number")
    assert index.match("x/y", "d" * 40, "x__y-4")[0].benchmark == "rebench"
    assert index.match("acme/tool", "f" * 40, "acme__tool-13") is None     # another PR of the same repo


def test_a_missing_or_empty_instance_file_is_one_clear_error(tmp_path):
    with pytest.raises(SkycurateError, match="no such file"):
        load_benchmark_instances([str(tmp_path / "nope.jsonl")])
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SkycurateError, match="no instances in it"):
        load_benchmark_instances([str(tmp_path / "empty.jsonl")])
