"""Valid ranges of the listings' columns that the prediction side needs too, in a module free of pandas.

The listings contract (:mod:`rentlake.contracts.listings`, batch side) cleans with these bounds, and the
estimates API (:mod:`rentlake.runtime.schemas`, light side) accepts the same domain: a surface that
cleaning would quarantine is refused at the API, not estimated.
"""

from __future__ import annotations

# A dwelling under 9 m² is not decent housing in France (décret n° 2002-120, art. 4); 1 000 m² is far
# beyond any flat in the sample data.
SURFACE_RANGE = (9.0, 1000.0)
