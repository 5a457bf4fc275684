"""The legal reference rents ("encadrement des loyers") of Paris and Lille, in one package.

- :mod:`rentlake.legal.contract` — the ``reference_rents`` dataset contract: the columns, aliases and
  rules the open-data tables are ingested and cleaned by (batch side: pandas).
- :mod:`rentlake.legal.compile` — the clean table compiled into the lookup artifact
  ``models/<version>/legal.json``, attached to a model at promotion (batch side: pandas).
- :mod:`rentlake.legal.lookup` — the artifact loaded and queried beside an estimate (light side).

This module is imported by the light prediction side: it must stay free of pandas, numpy and anything
heavy, so it imports none of its submodules; import them by name.
"""
