from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
KEY_STATE_ACTIVE: KeyState
KEY_STATE_PREPARED: KeyState
KEY_STATE_RETIRED: KeyState
KEY_STATE_UNSPECIFIED: KeyState

class GetKeysRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetKeysResponse(_message.Message):
    __slots__ = ["key_set"]
    KEY_SET_FIELD_NUMBER: _ClassVar[int]
    key_set: KeySet
    def __init__(self, key_set: _Optional[_Union[KeySet, _Mapping]] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ["activate_time", "alg", "create_time", "expire_time", "kid", "retire_time", "state"]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    activate_time: _timestamp_pb2.Timestamp
    alg: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    kid: str
    retire_time: _timestamp_pb2.Timestamp
    state: KeyState
    def __init__(self, kid: _Optional[str] = ..., alg: _Optional[str] = ..., state: _Optional[_Union[KeyState, str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., retire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KeySet(_message.Message):
    __slots__ = ["jwks", "keys", "revision", "update_time"]
    JWKS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    jwks: bytes
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    revision: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, revision: _Optional[int] = ..., jwks: _Optional[bytes] = ..., keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RotateKeysRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RotateKeysResponse(_message.Message):
    __slots__ = ["key_set"]
    KEY_SET_FIELD_NUMBER: _ClassVar[int]
    key_set: KeySet
    def __init__(self, key_set: _Optional[_Union[KeySet, _Mapping]] = ...) -> None: ...

class WatchKeysRequest(_message.Message):
    __slots__ = ["known_revision"]
    KNOWN_REVISION_FIELD_NUMBER: _ClassVar[int]
    known_revision: int
    def __init__(self, known_revision: _Optional[int] = ...) -> None: ...

class WatchKeysResponse(_message.Message):
    __slots__ = ["key_set"]
    KEY_SET_FIELD_NUMBER: _ClassVar[int]
    key_set: KeySet
    def __init__(self, key_set: _Optional[_Union[KeySet, _Mapping]] = ...) -> None: ...

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
