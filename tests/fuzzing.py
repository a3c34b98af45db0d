"""Every role's methods, and requests to throw at them: random bytes and hostile well-formed
messages (each field at random set to an edge value). Shared by the local and the cluster
fuzz."""

from __future__ import annotations

import math

import grpc
import numpy as np
from google.protobuf import descriptor as descriptor_mod
from google.protobuf import message_factory

from kuberl.roles import SERVICES
from kuberl.v1 import (analytics_service_pb2, buffer_service_pb2, environment_service_pb2, experiment_service_pb2,
                       learner_service_pb2, policy_service_pb2)

FILES = {"environment": environment_service_pb2, "buffer": buffer_service_pb2, "analytics": analytics_service_pb2,
         "experiment": experiment_service_pb2, "learner": learner_service_pb2, "policy": policy_service_pb2}
DELIBERATE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OUT_OF_RANGE}


def methods() -> list[tuple[str, str, descriptor_mod.MethodDescriptor]]:
    """(role, full method name, descriptor) of every RPC of every role."""
    found = []
    for role, service in SERVICES.items():
        for method in FILES[role].DESCRIPTOR.services_by_name[service].methods:
            found.append((role, f"/{method.containing_service.full_name}/{method.name}", method))
    return found


def message_class(descriptor: descriptor_mod.Descriptor) -> type:
    return message_factory.GetMessageClass(descriptor)


def call(channel: grpc.Channel, method: descriptor_mod.MethodDescriptor, payload: bytes) -> grpc.StatusCode:
    name = f"/{method.containing_service.full_name}/{method.name}"
    invoke = channel.unary_unary(name, request_serializer=None, response_deserializer=None)
    try:
        invoke(payload, timeout=20)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()


HOSTILE_STRINGS = ["", "e1", "../../etc/passwd", "\x00", "é" * 300, "%2F%00", "a/b#c", "x" * 5000]
HOSTILE_INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**62, 10**6]
HOSTILE_FLOATS = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e308, 1e-308]


def hostile(descriptor: descriptor_mod.Descriptor, rng: np.random.Generator, depth: int = 0):
    """A well-formed message of this type with each field set at random to an edge value."""
    message = message_class(descriptor)()
    for field in descriptor.fields:
        if rng.random() < 0.3:
            continue
        repeats = int(rng.integers(0, 4)) if field.is_repeated else 1
        for _ in range(repeats):
            value = _value(field, rng, depth)
            if value is None:
                continue
            if field.is_repeated:
                target = getattr(message, field.name)
                target.add().CopyFrom(value) if field.type == field.TYPE_MESSAGE else target.append(value)
            elif field.type == field.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
    return message


def _value(field: descriptor_mod.FieldDescriptor, rng: np.random.Generator, depth: int):
    kind = field.type
    if kind == field.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry or depth > 3:
            return None
        return hostile(field.message_type, rng, depth + 1)
    if kind == field.TYPE_STRING:
        return HOSTILE_STRINGS[rng.integers(len(HOSTILE_STRINGS))]
    if kind == field.TYPE_BYTES:
        return rng.bytes(int(rng.choice([0, 3, 17, 4096])))
    if kind == field.TYPE_BOOL:
        return bool(rng.integers(2))
    if kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        return HOSTILE_FLOATS[rng.integers(len(HOSTILE_FLOATS))]
    if kind == field.TYPE_ENUM:
        return int(rng.choice([v.number for v in field.enum_type.values] + [99]))
    value = HOSTILE_INTS[rng.integers(len(HOSTILE_INTS))]
    if kind in (field.TYPE_UINT32, field.TYPE_FIXED32, field.TYPE_UINT64, field.TYPE_FIXED64):
        value = abs(value)
    if kind in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32, field.TYPE_UINT32, field.TYPE_FIXED32):
        value = int(np.clip(value, -(2**31) if value < 0 else 0, 2**31 - 1))
    return value
