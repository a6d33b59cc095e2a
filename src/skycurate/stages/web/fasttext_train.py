"""Entry point that trains one fastText supervised model in a fresh process (see quality_model).

Reads a JSON job on stdin, prints ``{"error": null | message}`` as the last line of stdout.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    job = json.loads(sys.stdin.read())
    import fasttext

    error = None
    try:
        model = fasttext.train_supervised(input=job["train_path"], loss="softmax", verbose=0, **job["params"])
        if job["quantize"]:
            model.quantize(input=job["train_path"], retrain=True, thread=job["params"]["thread"], verbose=0)
        model.save_model(job["out"])
    except RuntimeError as e:  # "Encountered NaN." when the learning rate is too high for the data
        error = str(e)
    print(json.dumps({"error": error}))


if __name__ == "__main__":
    main()
