"""rentlake: a serverless pipeline for estimating rents.

The package is shipped as a Lambda layer (``layers/rentlake``). Its modules split into two sides:

* the batch side (``lake``, ``contracts``, ``ingest``, ``clean``, ``explore``, ``model``, ``registry``,
  ``reference``), which may import pandas, awswrangler and scikit-learn, and runs in the container image;
* the light side (``rentlake.runtime``), which imports only numpy, onnxruntime and boto3, and runs in the
  prediction function.
"""

__version__ = "0.1.0"
