from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReplayStats(_message.Message):
    __slots__ = ("size", "capacity", "total_inserted", "total_sampled", "priority_mass")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INSERTED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_MASS_FIELD_NUMBER: _ClassVar[int]
    size: int
    capacity: int
    total_inserted: int
    total_sampled: int
    priority_mass: float
    def __init__(self, size: _Optional[int] = ..., capacity: _Optional[int] = ..., total_inserted: _Optional[int] = ..., total_sampled: _Optional[int] = ..., priority_mass: _Optional[float] = ...) -> None: ...

class OpenReplayRequest(_message.Message):
    __slots__ = ("experiment_id", "config", "obs_size")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    OBS_SIZE_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    config: _common_pb2.ExperimentConfig
    obs_size: int
    def __init__(self, experiment_id: _Optional[str] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ..., obs_size: _Optional[int] = ...) -> None: ...

class OpenReplayResponse(_message.Message):
    __slots__ = ("stats", "restored")
    STATS_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    stats: ReplayStats
    restored: bool
    def __init__(self, stats: _Optional[_Union[ReplayStats, _Mapping]] = ..., restored: _Optional[bool] = ...) -> None: ...

class PushTransitionsRequest(_message.Message):
    __slots__ = ("experiment_id", "batch", "refuse_if_held")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REFUSE_IF_HELD_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    batch: _common_pb2.TransitionBatch
    refuse_if_held: bool
    def __init__(self, experiment_id: _Optional[str] = ..., batch: _Optional[_Union[_common_pb2.TransitionBatch, _Mapping]] = ..., refuse_if_held: _Optional[bool] = ...) -> None: ...

class PushTransitionsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ReplayStats
    def __init__(self, stats: _Optional[_Union[ReplayStats, _Mapping]] = ...) -> None: ...

class SampleBatchRequest(_message.Message):
    __slots__ = ("experiment_id", "count", "experiment_inserted", "experiment_sampled")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_INSERTED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    count: int
    experiment_inserted: int
    experiment_sampled: int
    def __init__(self, experiment_id: _Optional[str] = ..., count: _Optional[int] = ..., experiment_inserted: _Optional[int] = ..., experiment_sampled: _Optional[int] = ...) -> None: ...

class SampleBatchResponse(_message.Message):
    __slots__ = ("batch", "stats", "keys", "probabilities")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.TransitionBatch
    stats: ReplayStats
    keys: _common_pb2.Tensor
    probabilities: _common_pb2.Tensor
    def __init__(self, batch: _Optional[_Union[_common_pb2.TransitionBatch, _Mapping]] = ..., stats: _Optional[_Union[ReplayStats, _Mapping]] = ..., keys: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., probabilities: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class UpdatePrioritiesRequest(_message.Message):
    __slots__ = ("experiment_id", "keys", "priorities")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    keys: _common_pb2.Tensor
    priorities: _common_pb2.Tensor
    def __init__(self, experiment_id: _Optional[str] = ..., keys: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., priorities: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class UpdatePrioritiesResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ReplayStats
    def __init__(self, stats: _Optional[_Union[ReplayStats, _Mapping]] = ...) -> None: ...
