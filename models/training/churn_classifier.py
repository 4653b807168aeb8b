"""Train the ``churn_classifier`` demo model reproducibly and register it as version "1".

    python models/training/churn_classifier.py [--root DIR] [--force]

Model: RandomForest on a synthetic telecom account table (3000 customers, ~25% churn),
as in the spec's Example 1.
Fixed seeds (42) and pinned ONNX opsets: the same library versions give a byte-identical
model.onnx. Saved in metadata.json: accuracy, F1, ROC-AUC and 5-fold CV mean/std on the
training split, the ONNX/scikit-learn parity report on the held-out split, baseline
statistics of every feature (training split) and of the outputs (held-out split).
The data set and estimator are defined in ``importers.demo_models.DEMOS["churn_classifier"]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from importers.demo_models import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "churn_classifier", *sys.argv[1:]]))
