"""Runtime I/O: event recorders that persist stream payloads."""

from qmtl.runtime.io.recorder import EventRecorder, QuestDBRecorder, SQLiteRecorder, open_recorder

__all__ = ["EventRecorder", "QuestDBRecorder", "SQLiteRecorder", "open_recorder"]
