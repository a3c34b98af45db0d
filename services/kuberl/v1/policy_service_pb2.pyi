from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPolicyRequest(_message.Message):
    __slots__ = ("experiment_id", "newer_than_version", "result", "include_released")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NEWER_THAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RELEASED_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    newer_than_version: int
    result: bool
    include_released: bool
    def __init__(self, experiment_id: _Optional[str] = ..., newer_than_version: _Optional[int] = ..., result: _Optional[bool] = ..., include_released: _Optional[bool] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("mean_return", "episodes", "env_steps")
    MEAN_RETURN_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    mean_return: float
    episodes: int
    env_steps: int
    def __init__(self, mean_return: _Optional[float] = ..., episodes: _Optional[int] = ..., env_steps: _Optional[int] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("updated", "weights", "latest_version", "evaluation", "config", "released_at_seconds", "expires_at_seconds")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    RELEASED_AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    weights: _common_pb2.PolicyWeights
    latest_version: int
    evaluation: Evaluation
    config: _common_pb2.ExperimentConfig
    released_at_seconds: float
    expires_at_seconds: float
    def __init__(self, updated: _Optional[bool] = ..., weights: _Optional[_Union[_common_pb2.PolicyWeights, _Mapping]] = ..., latest_version: _Optional[int] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ..., released_at_seconds: _Optional[float] = ..., expires_at_seconds: _Optional[float] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("experiment_id", "weights", "result", "config")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    weights: _common_pb2.PolicyWeights
    result: Evaluation
    config: _common_pb2.ExperimentConfig
    def __init__(self, experiment_id: _Optional[str] = ..., weights: _Optional[_Union[_common_pb2.PolicyWeights, _Mapping]] = ..., result: _Optional[_Union[Evaluation, _Mapping]] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ...) -> None: ...

class UpdatePolicyResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListResultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeldResult(_message.Message):
    __slots__ = ("experiment_id", "version", "evaluation", "env_id", "released_at_seconds", "expires_at_seconds")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    version: int
    evaluation: Evaluation
    env_id: str
    released_at_seconds: float
    expires_at_seconds: float
    def __init__(self, experiment_id: _Optional[str] = ..., version: _Optional[int] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., env_id: _Optional[str] = ..., released_at_seconds: _Optional[float] = ..., expires_at_seconds: _Optional[float] = ...) -> None: ...

class ListResultsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HeldResult]
    def __init__(self, results: _Optional[_Iterable[_Union[HeldResult, _Mapping]]] = ...) -> None: ...

class DeleteResultRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class DeleteResultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
