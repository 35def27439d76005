"""The typed events of a chat turn (nemo-api.md #2), read from one SSE ``data:`` payload.

Two shapes are read, because the contract allows both and the studio emits either:

- the documented one, ``{"type": "text" | "tool_call" | "tool_result" | "heartbeat", …}``;
- Google ADK's ``Event`` (the ``/run_sse`` request is ADK's): ``author``,
  ``content.parts[]`` with ``text``, ``functionCall`` or ``functionResponse``,
  ``partial``, ``turnComplete``, ``errorCode`` / ``errorMessage`` (camelCase as ADK
  serialises them; snake_case is accepted too). One ADK event may carry several parts
  and so become several events here.

Parsing never raises. A payload that is not JSON is the backend talking: it becomes a
:class:`Text` — unless it starts like JSON (``{`` or ``[``), in which case it is a
broken object and becomes :class:`Unknown`, so that half an object is never shown to a
user. Unknown ``type`` values and JSON that fits neither shape are :class:`Unknown`,
with the payload kept for logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nemo.config import Secret, scrub

__all__ = [
    "AgentError",
    "ChatEvent",
    "Heartbeat",
    "Text",
    "ToolCall",
    "ToolResult",
    "Turn",
    "TurnComplete",
    "Unknown",
    "parse_event",
    "scrub_event",
]

log = logging.getLogger(__name__)

_HEARTBEAT_NAMES = frozenset({"heartbeat", "ping", "keepalive", "keep-alive"})
_ADK_KEYS = frozenset(
    {
        "content",
        "author",
        "partial",
        "turnComplete",
        "turn_complete",
        "errorCode",
        "error_code",
        "errorMessage",
        "error_message",
        "invocationId",
        "invocation_id",
    }
)


@dataclass(frozen=True)
class Text:
    """Text meant for the end user (it may still speak of a GUI: see :mod:`nemo.guispeak`).

    ``partial`` chunks (ADK streaming) are followed by one non-partial event with the
    whole text; :class:`Turn` joins them accordingly.
    """

    content: str
    partial: bool = False
    author: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """The agent calls one of its tools: internal, not for the user."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class ToolResult:
    """What a tool answered: internal, not for the user."""

    name: str | None
    result: Any = None
    call_id: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """The backend is still working. Heartbeats alone, for long enough, end the turn."""


@dataclass(frozen=True)
class AgentError:
    """The agent reports an error inside the turn (ADK ``errorCode``, or ``type: error``).

    The stream goes on (or closes) after it; the turn's text, if any, says more.
    """

    message: str
    code: str | None = None


@dataclass(frozen=True)
class TurnComplete:
    """ADK's ``turnComplete``: the agent says the turn is over (the stream should close)."""

    author: str | None = None


@dataclass(frozen=True)
class Unknown:
    """An event this client does not understand, kept for logs; never shown to a user."""

    raw: str
    event: str = "message"


ChatEvent = Text | ToolCall | ToolResult | Heartbeat | AgentError | TurnComplete | Unknown


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _args(value: Any) -> Mapping[str, Any]:
    """Tool arguments: an object, or a JSON string of one (some models send that)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"value": value}
    if isinstance(value, Mapping):
        return value
    return {} if value is None else {"value": value}


def _text_event(obj: Mapping[str, Any], raw: str, name: str) -> ChatEvent:
    content = _str(obj.get("content", obj.get("text")))
    if content is None:
        return Unknown(raw, name)
    return Text(content, partial=obj.get("partial") is True, author=_str(obj.get("author")))


def _tool_call_event(obj: Mapping[str, Any], raw: str, name: str) -> ChatEvent:
    tool = _str(obj.get("name"))
    if not tool:
        return Unknown(raw, name)
    return ToolCall(tool, _args(obj.get("args", obj.get("arguments"))), _id(obj.get("id")))


def _tool_result_event(obj: Mapping[str, Any], raw: str, name: str) -> ChatEvent:
    result = obj.get("result", obj.get("response", obj.get("content")))
    return ToolResult(_str(obj.get("name")), result, _id(obj.get("id")))


def _heartbeat_event(obj: Mapping[str, Any], raw: str, name: str) -> ChatEvent:
    return Heartbeat()


def _error_event(obj: Mapping[str, Any], raw: str, name: str) -> ChatEvent:
    message = _str(obj.get("message")) or _str(obj.get("error")) or "error"
    return AgentError(message, _id(obj.get("code")))


# The documented ``{"type": …}`` shape, with the spellings a backend plausibly uses.
_TYPED: dict[str, Callable[[Mapping[str, Any], str, str], ChatEvent]] = {
    "text": _text_event,
    "message": _text_event,
    "tool_call": _tool_call_event,
    "function_call": _tool_call_event,
    "tool_result": _tool_result_event,
    "function_result": _tool_result_event,
    "tool_response": _tool_result_event,
    "error": _error_event,
    **dict.fromkeys(_HEARTBEAT_NAMES, _heartbeat_event),
}


def _adk(obj: Mapping[str, Any], raw: str, name: str) -> list[ChatEvent]:
    """Google ADK's ``Event`` shape."""
    author = _str(obj.get("author"))
    partial = obj.get("partial") is True
    events: list[ChatEvent] = []
    code = obj.get("errorCode", obj.get("error_code"))
    message = obj.get("errorMessage", obj.get("error_message"))
    if code is not None or message is not None:
        events.append(AgentError(_str(message) or "error", _id(code)))
    content = obj.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            events.append(Unknown(json.dumps(part), name))
            continue
        call = part.get("functionCall", part.get("function_call"))
        response = part.get("functionResponse", part.get("function_response"))
        text = _str(part.get("text"))
        if isinstance(call, Mapping) and _str(call.get("name")):
            events.append(
                ToolCall(call["name"], _args(call.get("args")), _id(call.get("id")), author)
            )
        elif isinstance(response, Mapping):
            events.append(
                ToolResult(
                    _str(response.get("name")),
                    response.get("response"),
                    _id(response.get("id")),
                    author,
                )
            )
        elif text is not None:
            events.append(Text(text, partial=partial, author=author))
        else:
            events.append(Unknown(json.dumps(part), name))
    if obj.get("turnComplete", obj.get("turn_complete")) is True:
        events.append(TurnComplete(author))
    return events or [Unknown(raw, name)]


def _decode(data: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):
        return False, None


def _parse(data: str, name: str) -> list[ChatEvent]:
    stripped = data.strip()
    if name in _HEARTBEAT_NAMES or not stripped:
        # an empty data line is a heartbeat too (nemo-api.md)
        return [Heartbeat()]
    parsed, obj = _decode(stripped)
    if not parsed:
        return [Unknown(data, name) if stripped.startswith(("{", "[")) else Text(data)]
    if isinstance(obj, str):
        return [Text(obj)]
    if isinstance(obj, Mapping) and isinstance(obj.get("type"), str):
        reader = _TYPED.get(obj["type"])
        return [reader(obj, data, name) if reader else Unknown(data, name)]
    if isinstance(obj, Mapping) and _ADK_KEYS & obj.keys():
        return _adk(obj, data, name)
    return [Unknown(data, name)]


def parse_event(data: str, name: str = "message") -> list[ChatEvent]:
    """The events in one SSE event's ``data`` (``name`` is its ``event:`` field)."""
    try:
        return _parse(data, name)
    except Exception:  # noqa: BLE001 - a bug in reading one event must not end a paid turn
        log.warning("unreadable chat event of %d characters kept as Unknown", len(data))
        return [Unknown(data, name)]


def _scrub_json(value: Any, secrets: Iterable[Secret | None]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return {key: _scrub_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_json(item, secrets) for item in value]
    return value


def scrub_event(event: ChatEvent, secrets: Iterable[Secret | None]) -> ChatEvent:
    """``event`` with the token (and anything token-shaped) masked in every string.

    A backend that echoes a credential into a tool result must not put it in our logs.
    """
    secrets = tuple(secrets)
    if isinstance(event, Text):
        return replace(event, content=scrub(event.content, secrets))
    if isinstance(event, ToolCall):
        return replace(event, args=_scrub_json(event.args, secrets))
    if isinstance(event, ToolResult):
        return replace(event, result=_scrub_json(event.result, secrets))
    if isinstance(event, AgentError):
        return replace(event, message=scrub(event.message, secrets))
    if isinstance(event, Unknown):
        return replace(event, raw=scrub(event.raw, secrets))
    return event


@dataclass(frozen=True)
class Turn:
    """The events of one turn that closed, and what they add up to."""

    events: tuple[ChatEvent, ...]

    @classmethod
    def collect(cls, events: Iterable[ChatEvent]) -> Turn:
        """Read a chat to its end. A broken stream raises, as iterating it does."""
        return cls(tuple(events))

    @property
    def texts(self) -> tuple[Text, ...]:
        return tuple(event for event in self.events if isinstance(event, Text))

    @property
    def text(self) -> str:
        """The turn's text: whole messages joined by newlines, or, where only partial
        chunks came, the chunks joined as they are."""
        whole = [event.content for event in self.texts if not event.partial]
        if whole:
            return "\n".join(whole)
        return "".join(event.content for event in self.texts)

    @property
    def silent(self) -> bool:
        """No text at all (about 30 % of edits): read the state and diff the drafts."""
        return not self.text.strip()

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(event for event in self.events if isinstance(event, ToolCall))

    @property
    def errors(self) -> tuple[AgentError, ...]:
        return tuple(event for event in self.events if isinstance(event, AgentError))
