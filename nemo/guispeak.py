"""Translating the backend's GUI instructions for people who have no GUI.

The backend was written for an editor on screen, and its text says so: "click Export",
"open the music panel", "drag the clip", "preview in the timeline", "check your
account" — and in Chinese 点击, 打开, 拖拽, 导出. A user of reelyard has no button to
click. :func:`translate` replaces each sentence that gives such an instruction with a
sentence that makes sense through the API, and reports which API action each implies
(nemo-api.md: export = #6/#7, "open a panel" = read the state #5, drag and drop = send
another edit #2, "preview" = a summary of the tracks, the account = the credits #4).

Sentences without GUI talk are kept exactly as they were. Replacements are written in
the sentence's own language (Chinese if it holds any CJK character, else English), and a
replacement already given is not repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ApiAction", "Translation", "translate"]


class ApiAction(StrEnum):
    EXPORT = "export"  # start_render, then render_status
    READ_STATE = "read_state"  # state()
    SEND_EDIT = "send_edit"  # chat() with another instruction
    SUMMARISE = "summarise"  # Draft.summary()
    READ_CREDITS = "read_credits"  # credits()


# Chinese sentence ends: the ideographic full stop, the fullwidth ! and ?
_ZH_ENDS = "\u3002\uff01\uff1f"
_ZH_CLAUSE = f"[^{_ZH_ENDS}\\n]"
_EN_CLAUSE = r"[^.!?\n]"
_PANELS = "panel|tab|menu|settings|inspector|sidebar|library|editor|window"
_ENDS = ".!?" + _ZH_ENDS
_ZH_COMMA = "\uff0c"
_CLAUSES = re.compile(r"[,;\uff0c\uff1b\u3001]")
# clauses that only say when or why to follow the instruction
_QUALIFIER = re.compile(
    r"\s*(?:if|when|whenever|once|after|before|then|and|or|so|to|as soon as)\b"
    r"|\s*(?:如果|若|当|完成后|之后|然后|并且|或者)",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SENTENCES = re.compile(rf"((?<=[.!?])\s+|(?<=[{_ZH_ENDS}])\s*|\n+)")

# Most specific first: a match is dropped where it overlaps one found by an earlier
# rule, so "click the Export button" is an export, not a generic click.
_RULES: tuple[tuple[ApiAction, re.Pattern[str]], ...] = tuple(
    (action, re.compile(pattern, re.IGNORECASE))
    for action, pattern in (
        # export
        (
            ApiAction.EXPORT,
            rf"\b(?:click|press|hit|tap|select|choose|use)\b{_EN_CLAUSE}{{0,40}}?\bexport\b",
        ),
        (ApiAction.EXPORT, r"\bexport\s+(?:button|menu|panel|dialog|option|tab)\b"),
        (ApiAction.EXPORT, rf"点击{_ZH_CLAUSE}{{0,12}}?导出"),
        (ApiAction.EXPORT, r"导出按钮"),
        (ApiAction.EXPORT, rf"(?:请|可以|即可|然后|再|直接){_ZH_CLAUSE}{{0,6}}?导出"),
        # the account
        (
            ApiAction.READ_CREDITS,
            r"\bcheck\s+(?:your\s+)?(?:account|balance|credits?|plan|subscription)\b",
        ),
        (
            ApiAction.READ_CREDITS,
            r"\b(?:account|billing|subscription)\s+(?:page|settings|panel|section)\b",
        ),
        (ApiAction.READ_CREDITS, r"\btop\s+up\b"),
        (
            ApiAction.READ_CREDITS,
            rf"(?:查看|检查|前往){_ZH_CLAUSE}{{0,6}}?(?:账户|账号|余额|积分|额度)",
        ),
        (ApiAction.READ_CREDITS, r"充值"),
        # preview
        (ApiAction.SUMMARISE, r"\bpreview"),
        (ApiAction.SUMMARISE, r"\b(?:look\s+at|view|check|see)\s+(?:it\s+in\s+)?the\s+timeline\b"),
        (ApiAction.SUMMARISE, r"预览"),
        (ApiAction.SUMMARISE, rf"(?:查看|看看){_ZH_CLAUSE}{{0,4}}?时间线"),
        # panels and menus
        (
            ApiAction.READ_STATE,
            rf"\bopen\s+{_EN_CLAUSE}{{0,30}}?\b(?:{_PANELS})\b",
        ),
        (ApiAction.READ_STATE, r"\b(?:in|on)\s+the\s+[\w\s]{0,20}?\b(?:panel|inspector|sidebar)\b"),
        (ApiAction.READ_STATE, r"打开"),
        # hands on the timeline
        (ApiAction.SEND_EDIT, r"\bdrag(?:ging)?\b"),
        (ApiAction.SEND_EDIT, r"\bdrop\s+(?:it|them|the\s+\w+)\s+(?:on|onto|into|in)\b"),
        (ApiAction.SEND_EDIT, r"\b(?:right|double)[- ]click"),
        (ApiAction.SEND_EDIT, r"\b(?:use|move)\s+the\s+(?:slider|handles?)\b"),
        (ApiAction.SEND_EDIT, r"拖拽|拖动|拖到|拖放|右键|双击"),
        # any other click means "change something on screen"
        (ApiAction.SEND_EDIT, r"\b(?:click|tap)\b"),
        (ApiAction.SEND_EDIT, r"点击"),
    )
)

_ENGLISH: dict[ApiAction, str] = {
    ApiAction.EXPORT: "The video is ready to export.",
    ApiAction.READ_STATE: "The details are in the current state of the timeline.",
    ApiAction.SEND_EDIT: "To change it, send another edit instruction.",
    ApiAction.SUMMARISE: "The timeline summary shows what the video contains.",
    ApiAction.READ_CREDITS: "The credit balance can be read through the API.",
}
_CHINESE: dict[ApiAction, str] = {
    ApiAction.EXPORT: "视频已可以导出\u3002",
    ApiAction.READ_STATE: "详细信息在时间线的当前状态中\u3002",
    ApiAction.SEND_EDIT: "如需修改\uff0c请再发送一条编辑指令\u3002",
    ApiAction.SUMMARISE: "时间线摘要展示了视频的内容\u3002",
    ApiAction.READ_CREDITS: "积分余额可通过 API 查询\u3002",
}


@dataclass(frozen=True)
class Translation:
    """The text fit for an API user, and the API actions its instructions implied,
    in the order they first appear."""

    text: str
    actions: tuple[ApiAction, ...]

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _actions(sentence: str) -> list[ApiAction]:
    """The actions a sentence asks for, in the order of their words."""
    taken: list[tuple[int, int, ApiAction]] = []
    for action, pattern in _RULES:
        for match in pattern.finditer(sentence):
            start, end = match.span()
            if all(end <= other_start or start >= other_end for other_start, other_end, _ in taken):
                taken.append((start, end, action))
    ordered: list[ApiAction] = []
    for _, _, action in sorted(taken, key=lambda item: item[0]):
        if action not in ordered:
            ordered.append(action)
    return ordered


def _kept_clauses(sentence: str, chinese: bool) -> str:
    """What a sentence says besides its GUI instruction ("Not enough credits" in "Not
    enough credits, check your account"), as a sentence of its own: replacing the whole
    sentence would lose it. Clauses that only qualify the instruction ("when you are
    happy with it") go with the instruction."""
    kept = [
        clause.strip()
        for clause in _CLAUSES.split(sentence)
        if clause.strip() and not _actions(clause) and not _QUALIFIER.match(clause)
    ]
    if not kept:
        return ""
    ending = sentence.rstrip()[-1:]
    if ending not in _ENDS:
        ending = "\u3002" if chinese else "."
    text = (_ZH_COMMA if chinese else ", ").join(kept).rstrip(_ENDS)
    return text + ending


def translate(text: str, *, summary: str | None = None) -> Translation:
    """``text`` with its GUI instructions replaced, and the API actions they imply.

    A sentence that gives an instruction keeps its other clauses and has the
    instruction replaced by one sentence per action. ``summary`` (a
    :meth:`nemo.draft.Draft.summary`), when given, stands in for the backend's
    "preview" in English text: it is the preview an API user can have.
    """
    if not any(pattern.search(text) for _, pattern in _RULES):
        return Translation(text, ())
    pieces = _SENTENCES.split(text)
    out: list[str] = []
    actions: list[ApiAction] = []
    said: set[str] = set()
    for index in range(0, len(pieces), 2):
        sentence = pieces[index]
        separator = pieces[index + 1] if index + 1 < len(pieces) else ""
        found = _actions(sentence)
        if not found:
            out.append(sentence + separator)
            continue
        chinese = bool(_CJK.search(sentence))
        parts = [_kept_clauses(sentence, chinese)]
        for action in found:
            if action not in actions:
                actions.append(action)
            if chinese:
                replacement = _CHINESE[action]
            elif action is ApiAction.SUMMARISE and summary:
                replacement = f"{summary}."
            else:
                replacement = _ENGLISH[action]
            if replacement not in said:
                said.add(replacement)
                parts.append(replacement)
        joined = ("" if chinese else " ").join(part for part in parts if part)
        if joined:
            out.append(joined + separator)
    return Translation("".join(out).strip(), tuple(actions))
