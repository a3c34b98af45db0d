from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATE_UNSPECIFIED: _ClassVar[TrainingState]
    TRAINING_STATE_WAITING_FOR_DATA: _ClassVar[TrainingState]
    TRAINING_STATE_TRAINING: _ClassVar[TrainingState]
    TRAINING_STATE_SOLVED: _ClassVar[TrainingState]
    TRAINING_STATE_BUDGET_EXHAUSTED: _ClassVar[TrainingState]
    TRAINING_STATE_STOPPED: _ClassVar[TrainingState]
    TRAINING_STATE_FAILED: _ClassVar[TrainingState]
    TRAINING_STATE_BUDGET_SPENT: _ClassVar[TrainingState]
    TRAINING_STATE_INVALID_SPEC: _ClassVar[TrainingState]
TRAINING_STATE_UNSPECIFIED: TrainingState
TRAINING_STATE_WAITING_FOR_DATA: TrainingState
TRAINING_STATE_TRAINING: TrainingState
TRAINING_STATE_SOLVED: TrainingState
TRAINING_STATE_BUDGET_EXHAUSTED: TrainingState
TRAINING_STATE_STOPPED: TrainingState
TRAINING_STATE_FAILED: TrainingState
TRAINING_STATE_BUDGET_SPENT: TrainingState
TRAINING_STATE_INVALID_SPEC: TrainingState

class LearnerStats(_message.Message):
    __slots__ = ("state", "updates", "policy_version", "env_steps", "last_loss", "mean_q", "eval_return", "buffer_size", "message", "shards", "result_version", "result_return", "result_episodes")
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    LAST_LOSS_FIELD_NUMBER: _ClassVar[int]
    MEAN_Q_FIELD_NUMBER: _ClassVar[int]
    EVAL_RETURN_FIELD_NUMBER: _ClassVar[int]
    BUFFER_SIZE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    RESULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_RETURN_FIELD_NUMBER: _ClassVar[int]
    RESULT_EPISODES_FIELD_NUMBER: _ClassVar[int]
    state: TrainingState
    updates: int
    policy_version: int
    env_steps: int
    last_loss: float
    mean_q: float
    eval_return: float
    buffer_size: int
    message: str
    shards: int
    result_version: int
    result_return: float
    result_episodes: int
    def __init__(self, state: _Optional[_Union[TrainingState, str]] = ..., updates: _Optional[int] = ..., policy_version: _Optional[int] = ..., env_steps: _Optional[int] = ..., last_loss: _Optional[float] = ..., mean_q: _Optional[float] = ..., eval_return: _Optional[float] = ..., buffer_size: _Optional[int] = ..., message: _Optional[str] = ..., shards: _Optional[int] = ..., result_version: _Optional[int] = ..., result_return: _Optional[float] = ..., result_episodes: _Optional[int] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("experiment_id", "config")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    config: _common_pb2.ExperimentConfig
    def __init__(self, experiment_id: _Optional[str] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ...) -> None: ...

class StartTrainingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopTrainingRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class StopTrainingResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: LearnerStats
    def __init__(self, stats: _Optional[_Union[LearnerStats, _Mapping]] = ...) -> None: ...

class TrainStepRequest(_message.Message):
    __slots__ = ("experiment_id", "config", "num_updates")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NUM_UPDATES_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    config: _common_pb2.ExperimentConfig
    num_updates: int
    def __init__(self, experiment_id: _Optional[str] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ..., num_updates: _Optional[int] = ...) -> None: ...

class TrainStepResponse(_message.Message):
    __slots__ = ("stats", "seconds")
    STATS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stats: LearnerStats
    seconds: float
    def __init__(self, stats: _Optional[_Union[LearnerStats, _Mapping]] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetLearnerStatsRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class GetLearnerStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: LearnerStats
    def __init__(self, stats: _Optional[_Union[LearnerStats, _Mapping]] = ...) -> None: ...
