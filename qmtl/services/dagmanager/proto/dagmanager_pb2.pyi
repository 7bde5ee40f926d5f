from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiffRequest(_message.Message):
    __slots__ = ("strategy_id", "dag_json", "world_id", "execution_domain", "as_of", "partition")
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    DAG_JSON_FIELD_NUMBER: _ClassVar[int]
    WORLD_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    strategy_id: str
    dag_json: str
    world_id: str
    execution_domain: str
    as_of: str
    partition: str
    def __init__(self, strategy_id: _Optional[str] = ..., dag_json: _Optional[str] = ..., world_id: _Optional[str] = ..., execution_domain: _Optional[str] = ..., as_of: _Optional[str] = ..., partition: _Optional[str] = ...) -> None: ...

class BufferInstruction(_message.Message):
    __slots__ = ("node_id", "period", "interval")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    period: int
    interval: int
    def __init__(self, node_id: _Optional[str] = ..., period: _Optional[int] = ..., interval: _Optional[int] = ...) -> None: ...

class DiffChunk(_message.Message):
    __slots__ = ("queue_map", "buffering", "final", "sentinel_id", "version", "crc32", "total_nodes", "new_queues")
    class QueueMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUEUE_MAP_FIELD_NUMBER: _ClassVar[int]
    BUFFERING_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    SENTINEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NODES_FIELD_NUMBER: _ClassVar[int]
    NEW_QUEUES_FIELD_NUMBER: _ClassVar[int]
    queue_map: _containers.ScalarMap[str, str]
    buffering: _containers.RepeatedCompositeFieldContainer[BufferInstruction]
    final: bool
    sentinel_id: str
    version: str
    crc32: int
    total_nodes: int
    new_queues: int
    def __init__(self, queue_map: _Optional[_Mapping[str, str]] = ..., buffering: _Optional[_Iterable[_Union[BufferInstruction, _Mapping]]] = ..., final: _Optional[bool] = ..., sentinel_id: _Optional[str] = ..., version: _Optional[str] = ..., crc32: _Optional[int] = ..., total_nodes: _Optional[int] = ..., new_queues: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("ok", "detail")
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    detail: str
    def __init__(self, ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...
