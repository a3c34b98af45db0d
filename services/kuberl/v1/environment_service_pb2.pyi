from kuberl.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InitializeRequest(_message.Message):
    __slots__ = ("experiment_id", "config", "actor_index")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACTOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    config: _common_pb2.ExperimentConfig
    actor_index: int
    def __init__(self, experiment_id: _Optional[str] = ..., config: _Optional[_Union[_common_pb2.ExperimentConfig, _Mapping]] = ..., actor_index: _Optional[int] = ...) -> None: ...

class InitializeResponse(_message.Message):
    __slots__ = ("observation_size", "num_actions")
    OBSERVATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    observation_size: int
    num_actions: int
    def __init__(self, observation_size: _Optional[int] = ..., num_actions: _Optional[int] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopRolloutRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class StopRolloutResponse(_message.Message):
    __slots__ = ("env_steps", "episodes")
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    env_steps: int
    episodes: int
    def __init__(self, env_steps: _Optional[int] = ..., episodes: _Optional[int] = ...) -> None: ...
