from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_INT64: DType
DTYPE_BOOL: DType
DTYPE_UINT8: DType
DTYPE_INT32: DType
DTYPE_FLOAT64: DType

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TransitionBatch(_message.Message):
    __slots__ = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "steps")
    OBS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OBS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor
    truncated: Tensor
    steps: Tensor
    def __init__(self, obs: _Optional[_Union[Tensor, _Mapping]] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., next_obs: _Optional[_Union[Tensor, _Mapping]] = ..., terminated: _Optional[_Union[Tensor, _Mapping]] = ..., truncated: _Optional[_Union[Tensor, _Mapping]] = ..., steps: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PolicyWeights(_message.Message):
    __slots__ = ("version", "tensors")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    version: int
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, version: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class EnvironmentSpec(_message.Message):
    __slots__ = ("replicas", "envs_per_replica", "max_episode_steps", "step_delay_seconds", "policy_refresh_steps", "push_batch_size")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ENVS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    MAX_EPISODE_STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REFRESH_STEPS_FIELD_NUMBER: _ClassVar[int]
    PUSH_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    envs_per_replica: int
    max_episode_steps: int
    step_delay_seconds: float
    policy_refresh_steps: int
    push_batch_size: int
    def __init__(self, replicas: _Optional[int] = ..., envs_per_replica: _Optional[int] = ..., max_episode_steps: _Optional[int] = ..., step_delay_seconds: _Optional[float] = ..., policy_refresh_steps: _Optional[int] = ..., push_batch_size: _Optional[int] = ...) -> None: ...

class ExplorationSpec(_message.Message):
    __slots__ = ("epsilon_start", "epsilon_end", "epsilon_decay")
    EPSILON_START_FIELD_NUMBER: _ClassVar[int]
    EPSILON_END_FIELD_NUMBER: _ClassVar[int]
    EPSILON_DECAY_FIELD_NUMBER: _ClassVar[int]
    epsilon_start: float
    epsilon_end: float
    epsilon_decay: float
    def __init__(self, epsilon_start: _Optional[float] = ..., epsilon_end: _Optional[float] = ..., epsilon_decay: _Optional[float] = ...) -> None: ...

class BufferSpec(_message.Message):
    __slots__ = ("replicas", "capacity", "snapshot_interval_seconds", "prioritized", "priority_exponent", "importance_exponent")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIZED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_EXPONENT_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_EXPONENT_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    capacity: int
    snapshot_interval_seconds: float
    prioritized: bool
    priority_exponent: float
    importance_exponent: float
    def __init__(self, replicas: _Optional[int] = ..., capacity: _Optional[int] = ..., snapshot_interval_seconds: _Optional[float] = ..., prioritized: _Optional[bool] = ..., priority_exponent: _Optional[float] = ..., importance_exponent: _Optional[float] = ...) -> None: ...

class LearnerSpec(_message.Message):
    __slots__ = ("batch_size", "learning_rate", "gamma", "hidden_sizes", "target_update_interval", "samples_per_insert", "learning_starts", "max_grad_norm", "policy_push_interval", "batches_per_sample", "dueling", "n_step")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    TARGET_UPDATE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_INSERT_FIELD_NUMBER: _ClassVar[int]
    LEARNING_STARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    POLICY_PUSH_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BATCHES_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    DUELING_FIELD_NUMBER: _ClassVar[int]
    N_STEP_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    learning_rate: float
    gamma: float
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    target_update_interval: int
    samples_per_insert: float
    learning_starts: int
    max_grad_norm: float
    policy_push_interval: int
    batches_per_sample: int
    dueling: bool
    n_step: int
    def __init__(self, batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., gamma: _Optional[float] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., target_update_interval: _Optional[int] = ..., samples_per_insert: _Optional[float] = ..., learning_starts: _Optional[int] = ..., max_grad_norm: _Optional[float] = ..., policy_push_interval: _Optional[int] = ..., batches_per_sample: _Optional[int] = ..., dueling: _Optional[bool] = ..., n_step: _Optional[int] = ...) -> None: ...

class StopSpec(_message.Message):
    __slots__ = ("target_return", "eval_episodes", "max_env_steps", "eval_interval_updates", "confirm_episodes")
    TARGET_RETURN_FIELD_NUMBER: _ClassVar[int]
    EVAL_EPISODES_FIELD_NUMBER: _ClassVar[int]
    MAX_ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    EVAL_INTERVAL_UPDATES_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_EPISODES_FIELD_NUMBER: _ClassVar[int]
    target_return: float
    eval_episodes: int
    max_env_steps: int
    eval_interval_updates: int
    confirm_episodes: int
    def __init__(self, target_return: _Optional[float] = ..., eval_episodes: _Optional[int] = ..., max_env_steps: _Optional[int] = ..., eval_interval_updates: _Optional[int] = ..., confirm_episodes: _Optional[int] = ...) -> None: ...

class ExperimentConfig(_message.Message):
    __slots__ = ("env_id", "seed", "environment", "exploration", "buffer", "learner", "stop", "env_kwargs")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    ENV_KWARGS_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    seed: int
    environment: EnvironmentSpec
    exploration: ExplorationSpec
    buffer: BufferSpec
    learner: LearnerSpec
    stop: StopSpec
    env_kwargs: str
    def __init__(self, env_id: _Optional[str] = ..., seed: _Optional[int] = ..., environment: _Optional[_Union[EnvironmentSpec, _Mapping]] = ..., exploration: _Optional[_Union[ExplorationSpec, _Mapping]] = ..., buffer: _Optional[_Union[BufferSpec, _Mapping]] = ..., learner: _Optional[_Union[LearnerSpec, _Mapping]] = ..., stop: _Optional[_Union[StopSpec, _Mapping]] = ..., env_kwargs: _Optional[str] = ...) -> None: ...

class ReleaseExperimentRequest(_message.Message):
    __slots__ = ("experiment_id", "purge")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    purge: bool
    def __init__(self, experiment_id: _Optional[str] = ..., purge: _Optional[bool] = ...) -> None: ...

class ReleaseExperimentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
