"""Monitoring as code: the metric catalogue (:mod:`.catalogue`), the Jsonnet mixin renderer
(:mod:`.render`) and the bundle packager (:mod:`.packaging`); ``python -m qmtl.monitoring``
regenerates every artefact.
"""
