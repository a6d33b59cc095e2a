"""Dataset task cache keys: the code a task runs is derived from the task function (codehash.py)."""

from __future__ import annotations

import numpy as np

from skycurate.catalog import Catalog
from skycurate.errors import SkycurateError
from skycurate.codehash import closure, code_version, task_code_modules
from skycurate.stages import accounting

HASHING = "skycurate.stages.hashing"


def hash_rows(store: str, n: int) -> int:
    from skycurate.stages.hashing import fmix64

    return int(fmix64(np.arange(n, dtype=np.uint64)).sum())


def _read_benchmark(spec):
    from skycurate.connectors.benchmarks import load_benchmark

    return load_benchmark(spec)


def count_items(store: str, spec) -> accounting.FunnelStep:
    if not Catalog(store).is_local:
        raise SkycurateError("local stores only")
    n = sum(t.num_rows for t in _read_benchmark(spec).values())
    return accounting.FunnelStep(stage="count", rows_in=n, rows_out=n)


def test_a_task_importing_a_stage_in_its_body_hashes_exactly_that_stage_and_its_own_module():
    assert task_code_modules(hash_rows) == {__name__, HASHING}


def test_helpers_globals_and_closure_count_and_plumbing_does_not():
    modules = task_code_modules(count_items)
    # the benchmark reader is called by a helper of the task's module; accounting is a global
    # module; base comes with accounting (it imports it)
    assert {__name__, "skycurate.connectors.benchmarks", "skycurate.stages.accounting",
            "skycurate.stages.base"} <= modules
    assert closure(["skycurate.connectors.benchmarks"]) <= modules
    # catalog, errors and Prefect glue are plumbing: editing them does not invalidate caches
    assert not any(m == "skycurate" or m.startswith(("skycurate.catalog", "skycurate.errors", "skycurate.flows"))
                   for m in modules - {__name__})


def test_extra_code_names_a_package_with_every_module_below_it():
    modules = task_code_modules(hash_rows, code=["skycurate.stages.leakage"])
    assert {"skycurate.stages.leakage", "skycurate.stages.leakage.decontaminate",
            "skycurate.stages.leakage.ngrams"} <= modules
    assert code_version(modules) != code_version(task_code_modules(hash_rows))


def test_modules_run_as_subprocesses_are_found_by_name():
    # ``python -m skycurate.stages.web.fasttext_train`` and the vLLM worker script next to its client
    assert "skycurate.stages.web.fasttext_train" in closure(["skycurate.stages.web.quality_model"])
    assert "skycurate.connectors.llm.vllm_generate_worker" in closure(["skycurate.connectors.llm.vllm_generation"])


def test_flow_tasks_hash_what_they_call_without_a_hand_written_list():
    from skycurate.flows import _runtime
    from skycurate.flows.cot_distill import prepare_prompts
    from skycurate.flows.decontaminate import decontaminate

    # prepare_prompts calls skycurate.connectors.benchmarks.load_benchmark inside its body
    assert "skycurate.connectors.benchmarks" in _runtime._CODE_MODULES["prepare_prompts"]
    assert _runtime._CODE_MODULES["prepare_prompts"] == task_code_modules(prepare_prompts.fn)
    assert _runtime._CODE_VERSIONS["prepare_prompts"] == code_version(task_code_modules(prepare_prompts.fn))
    assert {"skycurate.flows._decontamination", "skycurate.stages.leakage.decontaminate",
            "skycurate.connectors.benchmarks"} <= _runtime._CODE_MODULES[decontaminate.name]


def test_dataset_task_derives_the_code_version_of_a_new_task():
    from skycurate.flows import _runtime

    made = _runtime.dataset_task(name="test-hash-rows")(hash_rows)
    assert made.name == "test-hash-rows"
    assert _runtime._CODE_MODULES["test-hash-rows"] == {__name__, HASHING}
    assert made.cache_policy.code == code_version([__name__, HASHING])


def test_docker_and_gpu_slots_are_prefect_global_concurrency_limits(prefect_harness):
    """The flows hold slots of ``skycurate-docker`` / ``skycurate-gpu`` on the Prefect server while
    they validate or generate; with no such limit configured they do not wait."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from skycurate.flows._runtime import slots

    name = f"skycurate-test-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=4))
        with slots(name, 3):
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 3
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
    with slots(f"{name}-not-configured", 2):   # no limit on the server: runs at once
        pass
