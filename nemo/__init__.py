"""The client of NemoVideo's agent API (nemo-api.md): typed calls, errors, SSE events.

It knows nothing of Celery, Flask or the database. Start with :class:`NemoConfig`
(``NemoConfig.from_env(os.environ)``), :func:`build_http_client` and :class:`NemoClient`;
failures are the tree in :mod:`nemo.errors`; drafts are read with :mod:`nemo.draft` and
the backend's GUI talk is translated by :mod:`nemo.guispeak`. Importing has no side
effects.
"""

from nemo.client import NemoClient
from nemo.config import PRODUCTION_BASE_URL, NemoConfig, Secret, build_http_client
from nemo.draft import Draft, Segment, Track, TrackType, diff
from nemo.errors import (
    ApiError,
    BreakReason,
    DownloadTooLarge,
    DuplicateRenderId,
    ExportBlocked,
    MediaTooLarge,
    MissingClientId,
    NemoError,
    OutOfCredits,
    ProtocolError,
    RateLimited,
    Repair,
    ServerError,
    SessionNotFound,
    StreamBroken,
    TokenInvalid,
    TransportError,
    UnsupportedMedia,
)
from nemo.events import (
    AgentError,
    ChatEvent,
    Heartbeat,
    Text,
    ToolCall,
    ToolResult,
    Turn,
    TurnComplete,
    Unknown,
)
from nemo.guispeak import ApiAction, Translation, translate
from nemo.models import (
    CanvasConfig,
    Credits,
    DownloadedFile,
    FileUpload,
    RenderState,
    RenderStatus,
    Session,
    SessionState,
    Token,
    Upload,
    UploadedFile,
)

__all__ = [
    "PRODUCTION_BASE_URL",
    "AgentError",
    "ApiAction",
    "ApiError",
    "BreakReason",
    "CanvasConfig",
    "ChatEvent",
    "Credits",
    "DownloadTooLarge",
    "DownloadedFile",
    "Draft",
    "DuplicateRenderId",
    "ExportBlocked",
    "FileUpload",
    "Heartbeat",
    "MediaTooLarge",
    "MissingClientId",
    "NemoClient",
    "NemoConfig",
    "NemoError",
    "OutOfCredits",
    "ProtocolError",
    "RateLimited",
    "RenderState",
    "RenderStatus",
    "Repair",
    "Secret",
    "Segment",
    "ServerError",
    "Session",
    "SessionNotFound",
    "SessionState",
    "StreamBroken",
    "Text",
    "Token",
    "TokenInvalid",
    "ToolCall",
    "ToolResult",
    "Track",
    "TrackType",
    "Translation",
    "TransportError",
    "Turn",
    "TurnComplete",
    "Unknown",
    "UnsupportedMedia",
    "Upload",
    "UploadedFile",
    "build_http_client",
    "diff",
    "translate",
]
