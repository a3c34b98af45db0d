from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExperimentPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERIMENT_PHASE_UNSPECIFIED: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_PENDING: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_RUNNING: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_SUCCEEDED: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_FAILED: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_STOPPED: _ClassVar[ExperimentPhase]
    EXPERIMENT_PHASE_SUSPENDED: _ClassVar[ExperimentPhase]
EXPERIMENT_PHASE_UNSPECIFIED: ExperimentPhase
EXPERIMENT_PHASE_PENDING: ExperimentPhase
EXPERIMENT_PHASE_RUNNING: ExperimentPhase
EXPERIMENT_PHASE_SUCCEEDED: ExperimentPhase
EXPERIMENT_PHASE_FAILED: ExperimentPhase
EXPERIMENT_PHASE_STOPPED: ExperimentPhase
EXPERIMENT_PHASE_SUSPENDED: ExperimentPhase

class ExperimentStatus(_message.Message):
    __slots__ = ("experiment_id", "phase", "message", "env_id", "env_steps", "episodes", "mean_return", "eval_return", "policy_version", "updates", "elapsed_seconds", "environment_replicas", "buffer_size", "result_version", "result_return", "result_episodes")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    MEAN_RETURN_FIELD_NUMBER: _ClassVar[int]
    EVAL_RETURN_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_RETURN_FIELD_NUMBER: _ClassVar[int]
    RESULT_EPISODES_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    phase: ExperimentPhase
    message: str
    env_id: str
    env_steps: int
    episodes: int
    mean_return: float
    eval_return: float
    policy_version: int
    updates: int
    elapsed_seconds: float
    environment_replicas: _containers.RepeatedScalarFieldContainer[str]
    buffer_size: int
    result_version: int
    result_return: float
    result_episodes: int
    def __init__(self, experiment_id: _Optional[str] = ..., phase: _Optional[_Union[ExperimentPhase, str]] = ..., message: _Optional[str] = ..., env_id: _Optional[str] = ..., env_steps: _Optional[int] = ..., episodes: _Optional[int] = ..., mean_return: _Optional[float] = ..., eval_return: _Optional[float] = ..., policy_version: _Optional[int] = ..., updates: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., environment_replicas: _Optional[_Iterable[str]] = ..., buffer_size: _Optional[int] = ..., result_version: _Optional[int] = ..., result_return: _Optional[float] = ..., result_episodes: _Optional[int] = ...) -> None: ...

class StartExperimentRequest(_message.Message):
    __slots__ = ("experiment_id", "config")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    config: _common_pb2.ExperimentConfig
    def __init__(self, experiment_id: _Optional[str] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ...) -> None: ...

class StartExperimentResponse(_message.Message):
    __slots__ = ("experiment_id", "environment_replicas")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    environment_replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment_id: _Optional[str] = ..., environment_replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class StopExperimentRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class StopExperimentResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: ExperimentStatus
    def __init__(self, status: _Optional[_Union[ExperimentStatus, _Mapping]] = ...) -> None: ...

class DeleteExperimentRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class DeleteExperimentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetExperimentStatusRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class GetExperimentStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: ExperimentStatus
    def __init__(self, status: _Optional[_Union[ExperimentStatus, _Mapping]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[ExperimentStatus]
    def __init__(self, experiments: _Optional[_Iterable[_Union[ExperimentStatus, _Mapping]]] = ...) -> None: ...
