"""Public SWE benchmarks whose source repositories a miner must not train on.

Mined instances from these repositories could overlap the evaluation sets (same repository,
same era, sometimes the same pull request), so by default they are never mined
(``RepoFilter.exclude``), and the rejection names the benchmark. Benchmarks that draw on
hundreds of repositories and grow monthly (SWE-bench-Live, SWE-rebench, Multi-SWE-bench)
cannot be listed by repository: give their published instance files to
``RepoFilter.exclude_instances`` for an instance-level check (repo + base commit, or repo + PR
number, or instance id).

Sources: the SWE-bench paper and dataset cards (SWE-bench, Lite and Verified draw on the same 12
Python repositories); the benchmarks' harness repositories are listed too.
"""

from __future__ import annotations

SWE_BENCH_REPOS = (
    "astropy/astropy", "django/django", "matplotlib/matplotlib", "mwaskom/seaborn", "pallets/flask",
    "psf/requests", "pydata/xarray", "pylint-dev/pylint", "pytest-dev/pytest", "scikit-learn/scikit-learn",
    "sphinx-doc/sphinx", "sympy/sympy",
)

# benchmark -> the repositories its instances come from (harness repositories included)
BENCHMARK_REPOS: dict[str, tuple[str, ...]] = {
    "SWE-bench": SWE_BENCH_REPOS,
    "SWE-bench Lite": SWE_BENCH_REPOS,
    "SWE-bench Verified": SWE_BENCH_REPOS,
    "SWE-bench harness": ("princeton-nlp/SWE-bench", "SWE-bench/SWE-bench", "SWE-bench/SWE-bench-Live",
                          "multi-swe-bench/multi-swe-bench", "SWE-Gym/SWE-Gym"),
}


def default_excluded_repos() -> list[str]:
    """Every repository of ``BENCHMARK_REPOS``, once, sorted case-insensitively."""
    return sorted({r for repos in BENCHMARK_REPOS.values() for r in repos}, key=str.lower)


def benchmarks_of(repo: str) -> list[str]:
    """The benchmarks that draw on ``repo`` (owner/name, case-insensitive)."""
    return [b for b, repos in BENCHMARK_REPOS.items() if repo.lower() in {r.lower() for r in repos}]
