"""fastText models (language ID, quality classifier) loaded once per process and file version.

Spark's Python workers are long-lived, so a module-level cache loads each model once per worker.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from skycurate.errors import ConfigError

_MODELS: dict[tuple[str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def load_fasttext(path: str | os.PathLike) -> Any:
    """A fastText model, loaded once per process and file version (path, mtime, size)."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except OSError:
        raise ConfigError(f"fastText model {path} not found") from None
    key = (path, st.st_mtime_ns, st.st_size)
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _MODELS_LOCK:
        if key not in _MODELS:
            import fasttext

            try:
                model = fasttext.load_model(path)
            except ValueError as e:  # fastText says "... has wrong file format!" and the like
                raise ConfigError(f"fastText model {path} does not load: {e}") from None
            for old in [k for k in _MODELS if k[0] == path]:  # the file was replaced: drop the stale model
                del _MODELS[old]
            _MODELS[key] = model
        return _MODELS[key]
