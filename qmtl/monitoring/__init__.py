"""Monitoring as code: render the Jsonnet mixin and package the bundle."""

from qmtl.monitoring.render import MonitoringError, Rendered, alert_names, render, rendered_files

__all__ = ["MonitoringError", "Rendered", "alert_names", "render", "rendered_files"]
