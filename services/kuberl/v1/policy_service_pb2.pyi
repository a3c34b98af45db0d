from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPolicyRequest(_message.Message):
    __slots__ = ("experiment_id", "newer_than_version", "result")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NEWER_THAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    newer_than_version: int
    result: bool
    def __init__(self, experiment_id: _Optional[str] = ..., newer_than_version: _Optional[int] = ..., result: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("updated", "weights", "latest_version", "evaluation")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    updated: bool
    weights: _common_pb2.PolicyWeights
    latest_version: int
    evaluation: Evaluation
    def __init__(self, updated: _Optional[bool] = ..., weights: _Optional[_Union[_common_pb2.PolicyWeights, _Mapping]] = ..., latest_version: _Optional[int] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("experiment_id", "weights", "result")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    weights: _common_pb2.PolicyWeights
    result: Evaluation
    def __init__(self, experiment_id: _Optional[str] = ..., weights: _Optional[_Union[_common_pb2.PolicyWeights, _Mapping]] = ..., result: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class UpdatePolicyResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...
