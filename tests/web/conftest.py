"""The built-in sample crawl and a quality model trained on it, made once for the web flow tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    from skycurate.samples.web import write_sample_crawl
    from skycurate.stages.web.quality_model import train_quality_model

    crawl = write_sample_crawl(tmp_path_factory.mktemp("sample"))
    model = crawl.root / "quality.bin"
    train_quality_model([str(crawl.positives)], [str(crawl.negatives)], str(model))
    return crawl, model
