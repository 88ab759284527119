from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateModelRequest(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class FeatureSetting(_message.Message):
    __slots__ = ["disabled", "feature", "model"]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    disabled: bool
    feature: str
    model: str
    def __init__(self, feature: _Optional[str] = ..., model: _Optional[str] = ..., disabled: bool = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class ListFeatureSettingsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListFeatureSettingsResponse(_message.Message):
    __slots__ = ["settings"]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[FeatureSetting]
    def __init__(self, settings: _Optional[_Iterable[_Union[FeatureSetting, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ["models"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ["api_key", "api_version", "create_time", "endpoint", "fallback_model", "family", "has_api_key", "identifier", "name", "provider", "trusted_networks", "update_time"]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODEL_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    HAS_API_KEY_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    api_version: str
    create_time: _timestamp_pb2.Timestamp
    endpoint: str
    fallback_model: str
    family: str
    has_api_key: bool
    identifier: str
    name: str
    provider: str
    trusted_networks: _containers.RepeatedScalarFieldContainer[str]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., provider: _Optional[str] = ..., endpoint: _Optional[str] = ..., identifier: _Optional[str] = ..., api_key: _Optional[str] = ..., has_api_key: bool = ..., trusted_networks: _Optional[_Iterable[str]] = ..., fallback_model: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., api_version: _Optional[str] = ...) -> None: ...

class SetFeatureSettingRequest(_message.Message):
    __slots__ = ["setting"]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    setting: FeatureSetting
    def __init__(self, setting: _Optional[_Union[FeatureSetting, _Mapping]] = ...) -> None: ...

class SetFeatureSettingResponse(_message.Message):
    __slots__ = ["setting"]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    setting: FeatureSetting
    def __init__(self, setting: _Optional[_Union[FeatureSetting, _Mapping]] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ["clear_api_key", "model", "update_mask"]
    CLEAR_API_KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    clear_api_key: bool
    model: Model
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., clear_api_key: bool = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class WatchModelsRequest(_message.Message):
    __slots__ = ["known_revision"]
    KNOWN_REVISION_FIELD_NUMBER: _ClassVar[int]
    known_revision: int
    def __init__(self, known_revision: _Optional[int] = ...) -> None: ...

class WatchModelsResponse(_message.Message):
    __slots__ = ["models", "revision", "settings"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    revision: int
    settings: _containers.RepeatedCompositeFieldContainer[FeatureSetting]
    def __init__(self, revision: _Optional[int] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., settings: _Optional[_Iterable[_Union[FeatureSetting, _Mapping]]] = ...) -> None: ...
