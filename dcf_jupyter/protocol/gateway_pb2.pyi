from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Message(_message.Message):
    __slots__ = ("Msg",)
    MSG_FIELD_NUMBER: _ClassVar[int]
    Msg: str
    def __init__(self, Msg: _Optional[str] = ...) -> None: ...

class Messages(_message.Message):
    __slots__ = ("Output", "ContentType")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONTENTTYPE_FIELD_NUMBER: _ClassVar[int]
    Output: bytes
    ContentType: str
    def __init__(self, Output: _Optional[bytes] = ..., ContentType: _Optional[str] = ...) -> None: ...

class CreateFunctionRequest(_message.Message):
    __slots__ = ("Service", "Image", "EnvVars", "Labels", "Annotations", "Constraints", "Secrets", "RegistryAuth", "Limits", "Requests", "Source", "Backend", "Replicas")
    class EnvVarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENVVARS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REGISTRYAUTH_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    Service: str
    Image: str
    EnvVars: _containers.ScalarMap[str, str]
    Labels: _containers.ScalarMap[str, str]
    Annotations: _containers.ScalarMap[str, str]
    Constraints: _containers.RepeatedScalarFieldContainer[str]
    Secrets: _containers.RepeatedScalarFieldContainer[str]
    RegistryAuth: str
    Limits: FunctionResources
    Requests: FunctionResources
    Source: bytes
    Backend: str
    Replicas: int
    def __init__(self, Service: _Optional[str] = ..., Image: _Optional[str] = ..., EnvVars: _Optional[_Mapping[str, str]] = ..., Labels: _Optional[_Mapping[str, str]] = ..., Annotations: _Optional[_Mapping[str, str]] = ..., Constraints: _Optional[_Iterable[str]] = ..., Secrets: _Optional[_Iterable[str]] = ..., RegistryAuth: _Optional[str] = ..., Limits: _Optional[_Union[FunctionResources, _Mapping]] = ..., Requests: _Optional[_Union[FunctionResources, _Mapping]] = ..., Source: _Optional[bytes] = ..., Backend: _Optional[str] = ..., Replicas: _Optional[int] = ...) -> None: ...

class DeleteFunctionRequest(_message.Message):
    __slots__ = ("FunctionName",)
    FUNCTIONNAME_FIELD_NUMBER: _ClassVar[int]
    FunctionName: str
    def __init__(self, FunctionName: _Optional[str] = ...) -> None: ...

class ScaleServiceRequest(_message.Message):
    __slots__ = ("ServiceName", "Replicas")
    SERVICENAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ServiceName: str
    Replicas: int
    def __init__(self, ServiceName: _Optional[str] = ..., Replicas: _Optional[int] = ...) -> None: ...

class InvokeServiceRequest(_message.Message):
    __slots__ = ("Service", "Input", "TimeLeft", "Depth", "Callers")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TIMELEFT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CALLERS_FIELD_NUMBER: _ClassVar[int]
    Service: str
    Input: bytes
    TimeLeft: float
    Depth: int
    Callers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, Service: _Optional[str] = ..., Input: _Optional[bytes] = ..., TimeLeft: _Optional[float] = ..., Depth: _Optional[int] = ..., Callers: _Optional[_Iterable[int]] = ...) -> None: ...

class FunctionRequest(_message.Message):
    __slots__ = ("FunctionName", "Lines")
    FUNCTIONNAME_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FunctionName: str
    Lines: int
    def __init__(self, FunctionName: _Optional[str] = ..., Lines: _Optional[int] = ...) -> None: ...

class Functions(_message.Message):
    __slots__ = ("Functions",)
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    Functions: _containers.RepeatedCompositeFieldContainer[Function]
    def __init__(self, Functions: _Optional[_Iterable[_Union[Function, _Mapping]]] = ...) -> None: ...

class Function(_message.Message):
    __slots__ = ("Name", "Image", "InvocationCount", "Replicas", "AvailableReplicas", "Annotations", "Labels", "Status", "Backend", "Error", "Gpus", "Autoscaled", "MinReplicas", "MaxReplicas", "ColdStarts", "LastColdStartSeconds", "LastColdStartAt", "Queued", "MaxQueued", "MaxBatchSize", "Schedule", "NextRun")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    INVOCATIONCOUNT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLEREPLICAS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALED_FIELD_NUMBER: _ClassVar[int]
    MINREPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAXREPLICAS_FIELD_NUMBER: _ClassVar[int]
    COLDSTARTS_FIELD_NUMBER: _ClassVar[int]
    LASTCOLDSTARTSECONDS_FIELD_NUMBER: _ClassVar[int]
    LASTCOLDSTARTAT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MAXQUEUED_FIELD_NUMBER: _ClassVar[int]
    MAXBATCHSIZE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    NEXTRUN_FIELD_NUMBER: _ClassVar[int]
    Name: str
    Image: str
    InvocationCount: int
    Replicas: int
    AvailableReplicas: int
    Annotations: _containers.ScalarMap[str, str]
    Labels: _containers.ScalarMap[str, str]
    Status: str
    Backend: str
    Error: str
    Gpus: _containers.RepeatedCompositeFieldContainer[ReplicaGpus]
    Autoscaled: bool
    MinReplicas: int
    MaxReplicas: int
    ColdStarts: int
    LastColdStartSeconds: float
    LastColdStartAt: float
    Queued: int
    MaxQueued: int
    MaxBatchSize: int
    Schedule: str
    NextRun: float
    def __init__(self, Name: _Optional[str] = ..., Image: _Optional[str] = ..., InvocationCount: _Optional[int] = ..., Replicas: _Optional[int] = ..., AvailableReplicas: _Optional[int] = ..., Annotations: _Optional[_Mapping[str, str]] = ..., Labels: _Optional[_Mapping[str, str]] = ..., Status: _Optional[str] = ..., Backend: _Optional[str] = ..., Error: _Optional[str] = ..., Gpus: _Optional[_Iterable[_Union[ReplicaGpus, _Mapping]]] = ..., Autoscaled: bool = ..., MinReplicas: _Optional[int] = ..., MaxReplicas: _Optional[int] = ..., ColdStarts: _Optional[int] = ..., LastColdStartSeconds: _Optional[float] = ..., LastColdStartAt: _Optional[float] = ..., Queued: _Optional[int] = ..., MaxQueued: _Optional[int] = ..., MaxBatchSize: _Optional[int] = ..., Schedule: _Optional[str] = ..., NextRun: _Optional[float] = ...) -> None: ...

class ReplicaGpus(_message.Message):
    __slots__ = ("Replica", "Devices", "Share", "MemoryUsed")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    MEMORYUSED_FIELD_NUMBER: _ClassVar[int]
    Replica: int
    Devices: _containers.RepeatedScalarFieldContainer[int]
    Share: float
    MemoryUsed: int
    def __init__(self, Replica: _Optional[int] = ..., Devices: _Optional[_Iterable[int]] = ..., Share: _Optional[float] = ..., MemoryUsed: _Optional[int] = ...) -> None: ...

class FunctionResources(_message.Message):
    __slots__ = ("Memory", "CPU", "GPU")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    Memory: str
    CPU: str
    GPU: str
    def __init__(self, Memory: _Optional[str] = ..., CPU: _Optional[str] = ..., GPU: _Optional[str] = ...) -> None: ...

class SecretRequest(_message.Message):
    __slots__ = ("Name", "Values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    Name: str
    Values: _containers.ScalarMap[str, bytes]
    def __init__(self, Name: _Optional[str] = ..., Values: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecretList(_message.Message):
    __slots__ = ("Secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    Secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, Secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("Name", "Keys", "UpdatedAt", "UsedBy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    UPDATEDAT_FIELD_NUMBER: _ClassVar[int]
    USEDBY_FIELD_NUMBER: _ClassVar[int]
    Name: str
    Keys: _containers.RepeatedScalarFieldContainer[str]
    UpdatedAt: float
    UsedBy: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, Name: _Optional[str] = ..., Keys: _Optional[_Iterable[str]] = ..., UpdatedAt: _Optional[float] = ..., UsedBy: _Optional[_Iterable[str]] = ...) -> None: ...

class SecretValues(_message.Message):
    __slots__ = ("Secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    Secrets: _containers.RepeatedCompositeFieldContainer[SecretRequest]
    def __init__(self, Secrets: _Optional[_Iterable[_Union[SecretRequest, _Mapping]]] = ...) -> None: ...

class MapRequest(_message.Message):
    __slots__ = ("Service", "Items", "Retries", "Single", "CallbackUrl")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    CALLBACKURL_FIELD_NUMBER: _ClassVar[int]
    Service: str
    Items: _containers.RepeatedCompositeFieldContainer[MapItem]
    Retries: int
    Single: bool
    CallbackUrl: str
    def __init__(self, Service: _Optional[str] = ..., Items: _Optional[_Iterable[_Union[MapItem, _Mapping]]] = ..., Retries: _Optional[int] = ..., Single: bool = ..., CallbackUrl: _Optional[str] = ...) -> None: ...

class MapItem(_message.Message):
    __slots__ = ("Index", "Input")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    Index: int
    Input: bytes
    def __init__(self, Index: _Optional[int] = ..., Input: _Optional[bytes] = ...) -> None: ...

class MapResult(_message.Message):
    __slots__ = ("Index", "Reply", "Code", "Error", "Origin", "Traceback", "Tries")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    TRIES_FIELD_NUMBER: _ClassVar[int]
    Index: int
    Reply: Messages
    Code: str
    Error: str
    Origin: str
    Traceback: str
    Tries: int
    def __init__(self, Index: _Optional[int] = ..., Reply: _Optional[_Union[Messages, _Mapping]] = ..., Code: _Optional[str] = ..., Error: _Optional[str] = ..., Origin: _Optional[str] = ..., Traceback: _Optional[str] = ..., Tries: _Optional[int] = ...) -> None: ...

class MapReplies(_message.Message):
    __slots__ = ("Results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    Results: _containers.RepeatedCompositeFieldContainer[MapResult]
    def __init__(self, Results: _Optional[_Iterable[_Union[MapResult, _Mapping]]] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("Id", "Wait")
    ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    Id: str
    Wait: float
    def __init__(self, Id: _Optional[str] = ..., Wait: _Optional[float] = ...) -> None: ...

class CallInfo(_message.Message):
    __slots__ = ("Id", "Function", "State", "Total", "Done", "Failed", "Created", "Finished", "Single", "Error")
    ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    Id: str
    Function: str
    State: str
    Total: int
    Done: int
    Failed: int
    Created: float
    Finished: float
    Single: bool
    Error: str
    def __init__(self, Id: _Optional[str] = ..., Function: _Optional[str] = ..., State: _Optional[str] = ..., Total: _Optional[int] = ..., Done: _Optional[int] = ..., Failed: _Optional[int] = ..., Created: _Optional[float] = ..., Finished: _Optional[float] = ..., Single: bool = ..., Error: _Optional[str] = ...) -> None: ...
