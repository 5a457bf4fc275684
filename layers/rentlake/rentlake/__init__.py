"""rentlake: a serverless pipeline for estimating rents.

The package is shipped as a Lambda layer (``layers/rentlake``); ``docs/ARCHITECTURE.md`` maps it. Its
modules split into two sides:

* the batch side — ``stages`` (ingest, clean, explore, train, evaluate, score), the rules they apply
  (``parsing``, ``cleaning``, ``explore``, ``model``), ``reporting``, ``registry`` and ``legal.compile`` —
  which may import pandas, pyarrow, awswrangler and scikit-learn, and runs in the container image;
* the light side — ``runtime`` and what it reads (``legal.lookup``, ``contracts.ranges``, ``records``,
  ``lake``) — which imports only numpy, onnxruntime, pydantic, Powertools and boto3, and runs in the
  prediction function.
"""

__version__ = "0.1.0"
