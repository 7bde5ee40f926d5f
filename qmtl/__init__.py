"""QMTL: trading strategies as DAGs, built to be operated."""

__version__ = "0.1.0"
