"""One Spark session and one Prefect harness per test session; a fresh store per test."""

from __future__ import annotations

import os
import sys

import pytest

# Before anything imports pyspark or prefect: 2 local cores, offline Prefect, no telemetry.
os.environ.setdefault("SKYCURATE_SPARK_MASTER", "local[2]")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("SKYCURATE_STORE", None)
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def spark():
    from skycurate.schemas.config import SparkConfig
    from skycurate.spark import get_spark

    session = get_spark(SparkConfig(shuffle_partitions=4))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    import skycurate.flows  # noqa: F401 - applies the offline defaults

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def python() -> str:
    return sys.executable


def pytest_collection_modifyitems(session, config, items):
    """Spark workers cannot import test modules: pickle their functions by value instead."""
    from pyspark import cloudpickle

    for module in {item.module for item in items if getattr(item, "module", None)}:
        cloudpickle.register_pickle_by_value(module)
