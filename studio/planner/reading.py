"""Reading a chat instruction: which words ask for what.

The studio has no language model, so a prompt is read by rules a person can check.
It is read in four passes over a folded copy (lower case, full-width forms made
ASCII, the same length as the prompt, so a position in the copy points into the
user's own text):

1. quoted text (``"…"``, ``'…'``, curly quotes, ``「…」``, ``『…』``, ``《…》``): titles
   and captions, kept exactly as typed;
2. unquoted text after a lead such as "titled", "title:", "caption:", "标题是";
3. numbers: aspect ratios (9:16), canvas sizes (1080x1920), resolutions (720p),
   durations (15 s, one minute, 30秒), speed factors (2x faster);
4. the phrase table :data:`PHRASES`: each phrase names a subject and a value.

Each pass masks what it read, so later passes cannot read it again: a title
"Calm Seas" asks for no calm music. Then negation settles what each hit means
("no music", "remove the title and the music", "not vertical", "from 16:9 to 1:1"),
context settles what a duration is for (next to "crossfade" it is the crossfade's,
before "per photo" it is each photo's), and the last word on a subject wins.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from studio.render.timeline import Fit, Mood, TransitionType

MAX_PROMPT_CHARS = 20_000
MAX_TEXT_CHARS = 200  # the longest title or caption kept
SHORT_MS = 15_000
MASK = "\x01"  # stands in for text a pass has read; never in a cleaned prompt

When = Literal["start", "end", "all"]


class Subject(StrEnum):
    """What a hit is about."""

    RATIO = "ratio"
    RES = "res"
    DURATION = "duration"  # a length whose role context settles:
    LENGTH = "length"  # ... the whole video's
    PER_PHOTO = "per_photo"  # ... each photo's
    TRANSITION_MS = "transition_ms"  # ... the transitions'
    SHORT = "short"
    SPEED = "speed"
    TRANSITION = "transition"
    MOTION = "motion"
    FIT = "fit"
    MUSIC = "music"
    MOOD = "mood"
    VOLUME = "volume"
    TITLE = "title"  # the word "title"
    TITLE_TEXT = "title_text"
    CAPTION = "caption"  # the word "caption"
    CAPTION_TEXT = "caption_text"
    QUOTE = "quote"  # quoted text, a title or a caption by context
    WHEN = "when"  # "at the end", "at the start"
    PHOTOS = "photos"  # "add the new photos"
    START_OVER = "start_over"
    REMOVE = "remove"  # "no", "without", "remove", "不要"
    IGNORE = "ignore"  # "not", "from", "instead of": the next mention is not wanted
    AFFIRM = "affirm"  # "add", "use", "with": ends a negation
    NOISE = "noise"  # looks like a keyword, is not one ("portrait photos")


#: subjects a negation turns into a removal; on any other, "no"/"remove" does nothing
REMOVABLE = frozenset(
    {
        Subject.MUSIC,
        Subject.MOOD,
        Subject.VOLUME,
        Subject.TITLE,
        Subject.CAPTION,
        Subject.TRANSITION,
        Subject.MOTION,
        Subject.QUOTE,
    }
)
#: hits that ask for something (the rest only shape how those are read)
_REQUESTS = frozenset(Subject) - {
    Subject.REMOVE,
    Subject.IGNORE,
    Subject.AFFIRM,
    Subject.NOISE,
    Subject.WHEN,
    Subject.QUOTE,
}


@dataclass(frozen=True)
class Rule:
    """What a phrase asks for: a subject, a value, and whether "no …" can undo it."""

    subject: Subject
    value: str | None = None
    number: float | None = None
    negatable: bool = True
    note: str | None = None


_9_16, _16_9, _1_1, _4_5 = "9:16", "16:9", "1:1", "4:5"
_NO_4K = "4K isn't available: 1080p is the highest resolution"
_PHOTO_WORDS = ("photo(s)", "picture(s)", "image(s)", "shot(s)", "pic(s)")

#: The phrase table. A phrase is words separated by spaces (matching spaces,
#: hyphens or nothing: "lo fi" reads "lo-fi", "lofi" and "lo fi"); "(s)" makes a
#: plural optional. Where phrases overlap, the longest wins ("no zoom" over "zoom").
# fmt: off
PHRASES: tuple[tuple[Rule, tuple[str, ...]], ...] = (
    # aspect ratio
    (
        Rule(Subject.RATIO, _9_16),
        (
            "vertical", "portrait", "tiktok", "tik tok", "douyin", "reel(s)",
            "instagram reel(s)", "instagram story", "instagram stories", "ig story",
            "shorts", "youtube shorts", "竖屏", "竖版", "竖向", "抖音",
        ),
    ),
    (
        Rule(Subject.RATIO, _16_9),
        ("landscape", "horizontal", "widescreen", "youtube", "横屏", "横版", "横向"),
    ),
    (Rule(Subject.RATIO, _1_1), ("square", "方形", "正方形", "方屏")),
    (Rule(Subject.RATIO, _4_5), ("instagram", "instagram post(s)", "instagram feed", "小红书")),
    (
        Rule(Subject.NOISE),
        (
            *(f"{o} {w}" for o in ("portrait", "landscape") for w in _PHOTO_WORDS),
            "portrait of", "quick question", "fade out the music", "fade the music",
            "fade in the music", "music fade(s)", "music fade out", "music fade in",
        ),
    ),
    # resolution
    (Rule(Subject.RES, number=1080), ("full hd", "fhd", "高清", "超清")),
    (Rule(Subject.RES, number=1080, note=_NO_4K), ("4k", "uhd", "ultra hd", "2k")),
    (Rule(Subject.RES, number=720), ("标清",)),
    # length and pace
    (Rule(Subject.SHORT, number=SHORT_MS), ("short", "短视频")),
    (
        Rule(Subject.SPEED, number=0.7),
        (
            "faster", "fast", "quick", "quicker", "speed up", "speed it up", "snappier",
            "fast paced", "shorter", "more quickly", "快一点", "快点", "加快", "快些",
            "更快", "短一点",
        ),
    ),
    (Rule(Subject.SPEED, number=0.5), ("twice as fast", "double speed", "double the speed")),
    (
        Rule(Subject.SPEED, number=1.4),
        (
            "slower", "slow", "slow down", "slow it down", "longer", "more slowly",
            "slow motion", "慢一点", "慢点", "放慢", "慢些", "更慢", "长一点",
        ),
    ),
    (Rule(Subject.SPEED, number=2.0), ("twice as slow", "half speed", "half the speed")),
    # transitions
    (
        Rule(Subject.TRANSITION, TransitionType.CROSSFADE, number=800),
        ("smooth", "smoothly", "smoother", "seamless", "丝滑", "无缝", "平滑", "流畅"),
    ),
    (
        Rule(Subject.TRANSITION, TransitionType.CROSSFADE),
        ("cross fade(s)", "dissolve(s)", "blend(s)", "叠化", "溶解", "交叉淡化"),
    ),
    (
        Rule(Subject.TRANSITION, TransitionType.FADE_BLACK),
        (
            "fade(s)", "fade to black", "fade through black", "dip to black", "fade in",
            "fade out", "fading", "淡入淡出", "淡入", "淡出", "黑场",
        ),
    ),
    (
        Rule(Subject.TRANSITION, TransitionType.SLIDE_LEFT),
        ("slide(s)", "slide left", "slide to the left", "sliding", "滑动"),
    ),
    (Rule(Subject.TRANSITION, TransitionType.SLIDE_RIGHT), ("slide right", "slide to the right")),
    (Rule(Subject.TRANSITION, TransitionType.WIPE_LEFT), ("wipe(s)", "wipe left", "擦除")),
    (Rule(Subject.TRANSITION, TransitionType.WIPE_RIGHT), ("wipe right", "wipe to the right")),
    (Rule(Subject.TRANSITION, TransitionType.ZOOM), ("zoom", "zoom transition(s)", "缩放转场")),
    (
        Rule(Subject.TRANSITION, TransitionType.NONE, number=0),
        (
            "hard cut(s)", "straight cut(s)", "jump cut(s)", "cuts only", "just cuts",
            "硬切", "直接切换",
        ),
    ),
    (Rule(Subject.TRANSITION), ("transition(s)", "转场", "过渡")),
    # Ken Burns motion
    (Rule(Subject.MOTION, "auto"), ("ken burns", "motion", "movement", "animation", "animated")),
    (
        Rule(Subject.MOTION, "none"),
        ("static", "no zoom", "no zooming", "no panning", "still photos", "静态", "静止"),
    ),
    (
        Rule(Subject.MOTION, "zoom_in"),
        ("zoom in", "zooming in", "slow zoom", "push in", "放大", "推近"),
    ),
    (
        Rule(Subject.MOTION, "zoom_out"),
        ("zoom out", "zooming out", "pull out", "pull back", "缩小"),
    ),
    (Rule(Subject.MOTION, "pan_left"), ("pan left", "pan to the left")),
    (Rule(Subject.MOTION, "pan_right"), ("pan(s)", "panning", "pan right", "pan to the right")),
    (Rule(Subject.MOTION, "pan_up"), ("pan up", "pan upwards")),
    (Rule(Subject.MOTION, "pan_down"), ("pan down", "pan downwards")),
    # how photos fill the frame
    (
        Rule(Subject.FIT, Fit.CONTAIN),
        (
            "don't crop", "do not crop", "dont crop", "no crop", "no cropping",
            "without cropping", "uncropped", "whole photo(s)", "entire photo(s)",
            "full photo(s)", "letterbox", "letterboxed", "不要裁剪", "不裁剪",
        ),
    ),
    (
        Rule(Subject.FIT, Fit.COVER),
        ("crop to fill", "fill the frame", "fill the screen", "full screen", "铺满"),
    ),
    # music
    (
        Rule(Subject.MUSIC),
        (
            "music", "bgm", "background music", "soundtrack", "song", "tune(s)", "audio",
            "sound", "音乐", "背景音乐", "配乐", "背景乐", "歌曲",
        ),
    ),
    (
        Rule(Subject.MUSIC, "own"),
        (
            "my song", "my music", "my track", "my audio", "my own music", "uploaded song",
            "uploaded music", "uploaded audio", "uploaded track", "the song i uploaded",
            "the audio file", "my mp3", "我的音乐", "我上传的音乐", "我的歌",
        ),
    ),
    (Rule(Subject.MUSIC, "off"), ("mute", "muted", "silent", "silence", "静音", "无声")),
    (Rule(Subject.MOOD, Mood.LOFI), ("lo fi", "lofi", "低保真")),
    (
        Rule(Subject.MOOD, Mood.UPBEAT),
        (
            "upbeat", "energetic", "lively", "cheerful", "peppy", "happy music",
            "fun music", "party music", "dance music", "动感", "欢快", "活泼", "轻快",
        ),
    ),
    (
        Rule(Subject.MOOD, Mood.CALM),
        (
            "calm", "calming", "relaxing", "relaxed", "chill", "chilled", "peaceful",
            "gentle", "soft", "soothing", "ambient", "mellow", "舒缓", "轻柔", "安静",
            "放松", "抒情", "平静",
        ),
    ),
    (
        Rule(Subject.VOLUME, number=0.6),
        (
            "louder", "louder music", "music louder", "turn up the music",
            "turn the music up", "raise the music", "音乐大一点", "音量大一点", "大声",
        ),
    ),
    (
        Rule(Subject.VOLUME, number=0.2),
        (
            "quieter", "quieter music", "softer music", "music quieter", "music softer",
            "lower the music", "turn down the music", "turn the music down", "music lower",
            "音乐小一点", "音量小一点", "小声",
        ),
    ),
    # title and captions
    (
        Rule(Subject.TITLE),
        ("title", "heading", "headline", "title text", "title card", "标题", "片名", "题目"),
    ),
    (
        Rule(Subject.TITLE, negatable=False),
        ("titled", "entitled", "call it", "name it", "title it", "rename it"),
    ),
    (
        Rule(Subject.CAPTION),
        (
            "caption(s)", "subtitle(s)", "text", "text overlay", "overlay", "tagline",
            "lower third", "字幕", "文字", "文案",
        ),
    ),
    (
        Rule(Subject.WHEN, "end"),
        (
            "at the end", "in the end", "at the very end", "by the end", "ending", "outro",
            "last photo", "final photo", "last slide", "last frame", "结尾", "最后", "片尾",
            "末尾",
        ),
    ),
    (
        Rule(Subject.WHEN, "start"),
        (
            "at the start", "at the beginning", "in the beginning", "beginning", "opening",
            "intro", "first photo", "first slide", "开头", "片头",
        ),
    ),
    # photos and whole-video requests
    (
        Rule(Subject.PHOTOS),
        (
            *(f"{q} {w}" for q in ("new", "other", "remaining") for w in _PHOTO_WORDS),
            "rest of the photos", "all the photos", "all photos", "all my photos",
            "all of the photos", "新照片", "新的照片", "所有照片", "全部照片", "其他照片",
        ),
    ),
    (
        Rule(Subject.START_OVER),
        ("start over", "start again", "from scratch", "regenerate", "remake", "重新生成",
         "重新开始", "重做"),
    ),
    # words that shape the others
    (
        Rule(Subject.REMOVE),
        (
            "no", "without", "remove", "delete", "drop", "get rid of", "take out",
            "take off", "take away", "lose", "kill", "cut", "turn off", "disable", "hide",
            "skip", "don't", "dont", "do not", "don't want", "do not want", "don't need",
            "don't use", "do not use", "dont use", "don't add", "do not add", "dont add",
            "don't include", "don't put",
            "no need for", "never", "不要", "去掉", "删除", "删掉", "去除", "移除", "取消",
            "关掉", "关闭", "不用", "不需要", "无", "没有",
        ),
    ),
    (
        Rule(Subject.IGNORE),
        ("not", "from", "instead of", "rather than", "than", "no longer", "isn't",
         "is not", "不是", "而不是"),
    ),
    (
        Rule(Subject.AFFIRM),
        (
            "add", "use", "make", "put", "include", "with", "want", "give", "set", "change",
            "switch", "keep", "apply", "but", "加", "加上", "添加", "用", "使用", "换成",
            "改成", "改为", "要", "来点", "配上",
        ),
    ),
)
# fmt: on


@dataclass(frozen=True)
class Hit:
    """One thing read from the prompt, where it stands, and what it asks."""

    start: int
    end: int
    subject: Subject
    value: str | None = None
    number: float | None = None
    negatable: bool = True
    note: str | None = None
    when: When | None = None


@dataclass(frozen=True)
class Caption:
    text: str
    when: When  # "end": the last 3 s; "start": the first 3 s; "all": the whole video


@dataclass(frozen=True)
class Wishes:
    """Everything a prompt asks for; ``None`` where it says nothing."""

    ratio: str | None = None
    res: int | None = None
    length_ms: int | None = None
    per_photo_ms: int | None = None
    short: bool = False
    speed: float | None = None
    transition: TransitionType | None = None
    transition_ms: int | None = None  # asked in numbers ("1 second crossfades")
    transition_style_ms: int | None = None  # the named style's own length ("smooth": 800)
    transitions_mentioned: bool = False  # "transitions" without saying which
    motion: str | None = None
    fit: Fit | None = None
    music: bool | None = None  # True: add, False: remove
    mood: Mood | None = None
    own_audio: bool = False
    volume: float | None = None
    title: str | None = None
    remove_title: bool = False
    title_without_text: bool = False
    captions: tuple[Caption, ...] = ()
    remove_captions: bool = False
    add_photos: bool = False
    start_over: bool = False
    question: bool = False
    understood: bool = False  # the prompt asked for at least one thing
    notes: tuple[str, ...] = ()  # what reading had to assume or could not honour


# --- the passes -----------------------------------------------------------------


def read(prompt: str) -> Wishes:
    """What ``prompt`` asks for. Never raises on any string."""
    text, notes = _clean(prompt)
    hits: list[Hit] = []
    folded = _fold(text)
    folded = _mask(folded, _quotes(text, hits))
    folded = _mask(folded, _unquoted_texts(text, folded, hits))
    folded = _mask(folded, _numbers(folded, hits))
    _phrases(folded, hits)
    hits.sort(key=lambda h: (h.start, -h.end))
    settled = _settle(folded, hits)
    settled = _durations(folded, settled)
    settled = _quote_roles(folded, settled)
    wants = _Wants(Wishes(question=_is_question(folded)), notes)
    for hit, removed in settled:
        _apply(wants, hit, removed)
    return wants.freeze()


def _clean(prompt: str) -> tuple[str, list[str]]:
    """The prompt without control characters or lone surrogates, at most MAX_PROMPT_CHARS."""
    notes: list[str] = []
    if len(prompt) > MAX_PROMPT_CHARS:
        prompt = prompt[:MAX_PROMPT_CHARS]
        notes.append(f"only the first {MAX_PROMPT_CHARS:,} characters of the message were read")
    kept = (
        " " if unicodedata.category(ch) in {"Cc", "Cs"} and ch not in "\n\t" else ch
        for ch in prompt
    )
    return "".join(kept), notes


def _fold(text: str) -> str:
    """Lower case, full-width ASCII made ASCII, curly apostrophes straight; same length."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            ch = chr(code - 0xFEE0)  # noqa: PLW2901 - folding one character at a time
        elif ch == "\u3000":
            ch = " "  # noqa: PLW2901
        elif ch in "\u2018\u2019":
            ch = "'"  # noqa: PLW2901
        lower = ch.lower()
        out.append(lower if len(lower) == 1 else ch)
    return "".join(out)


def _mask(folded: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return folded
    chars = list(folded)
    for start, end in spans:
        chars[start:end] = MASK * (end - start)
    return "".join(chars)


_QUOTED = re.compile(
    r'"(?P<q1>[^"\n]{1,300})"'
    "|\u201c(?P<q2>[^\u201d\n]{1,300})\u201d"  # “ ”
    "|\u2018(?P<q3>[^\n]{1,300}?)\u2019(?![A-Za-z0-9])"  # curly single, past apostrophes
    "|\u300c(?P<q4>[^\u300d\n]{1,300})\u300d"  # 「 」
    "|\u300e(?P<q5>[^\u300f\n]{1,300})\u300f"  # 『 』
    "|\u300a(?P<q6>[^\u300b\n]{1,300})\u300b"  # 《 》
    "|\u00ab(?P<q7>[^\u00bb\n]{1,300})\u00bb"  # « »
    "|\uff02(?P<q8>[^\uff02\n]{1,300})\uff02"  # full-width "
    r"|(?<![A-Za-z0-9'])'(?P<q9>[^\n]{1,300}?)'(?![A-Za-z0-9])"  # single, past apostrophes
)


def _quotes(text: str, hits: list[Hit]) -> list[tuple[int, int]]:
    spans = []
    for match in _QUOTED.finditer(text):
        inner = next(g for g in match.groups() if g is not None).strip()
        if inner:
            hits.append(Hit(match.start(), match.end(), Subject.QUOTE, inner))
        spans.append(match.span())
    return spans


_TITLE_LEADS = (
    r"(?<![a-z])(?:titled|entitled|title\s*[:=]|title\s+(?:is|to|as|should\s+be|will\s+be"
    r"|reads|reading|saying)|with\s+(?:the|a)\s+title|call\s+it|name\s+it|title\s+it)"
    r"|(?:标题|片名)(?:是|为|叫|改为|改成|换成)[:=]?|(?:标题|片名)[:=]"
)
_CAPTION_LEADS = (
    r"(?<![a-z])(?:(?:caption|subtitle|text)\s*[:=]|(?:caption|text)\s+(?:saying|that\s+says"
    r"|reading))|(?:字幕|文字|文案)(?:是|为)?[:=]|(?:字幕|文字|文案)(?:是|为)"
)
_LEAD = re.compile(rf"(?:(?P<title>{_TITLE_LEADS})|(?P<caption>{_CAPTION_LEADS}))\s*[:=]?\s*")
#: where unquoted text ends: a sentence, a comma, "with …", "and <instruction>", "at the end"
_TEXT_END = re.compile(
    r"[.!?;,\n\u3002\x01]|\s+(?:with|but|then)\b"
    r"|\s+and\s+(?:add|use|make|set|change|remove|put|turn|include|give|no|without|keep"
    r"|switch|music|transitions?)\b|\s+(?:at|in)\s+the\s+(?:end|start|beginning)\b"
)
_NOT_A_TEXT = re.compile(r"(?:and|with|but|then|or)\b|\x01")


def _unquoted_texts(text: str, folded: str, hits: list[Hit]) -> list[tuple[int, int]]:
    """Titles and captions typed without quotes, after a lead such as "titled"."""
    spans = []
    for lead in _LEAD.finditer(folded):
        rest = folded[lead.end() :]
        if not rest or _NOT_A_TEXT.match(rest):
            continue
        stop = _TEXT_END.search(rest)
        end = lead.end() + (stop.start() if stop else len(rest))
        words = text[lead.end() : end].strip()
        if not words:
            continue
        subject = Subject.TITLE_TEXT if lead.group("title") else Subject.CAPTION_TEXT
        hits.append(Hit(lead.start(), end, subject, words, negatable=False))
        spans.append((lead.start(), end))
    return spans


# numbers

_KNOWN_RATIOS: dict[str, tuple[str, str | None]] = {
    "16:9": (_16_9, None),
    "9:16": (_9_16, None),
    "1:1": (_1_1, None),
    "4:5": (_4_5, None),
    "4:3": (_16_9, "4:3 isn't available: used 16:9"),
    "3:2": (_16_9, "3:2 isn't available: used 16:9"),
    "21:9": (_16_9, "21:9 isn't available: used 16:9"),
    "3:4": (_4_5, "3:4 isn't available: used 4:5"),
    "2:3": (_9_16, "2:3 isn't available: used 9:16"),
}
_CANVAS = re.compile(r"(?<![\d.])(\d{3,4})\s*[x×*]\s*(\d{3,4})(?![\d.])")  # noqa: RUF001 - people type the times sign
_RATIO = re.compile(r"(?<![\d.:])(\d{1,2})\s*[:/∶x×]\s*(\d{1,2})(?![\d:.])")  # noqa: RUF001
_RES = re.compile(r"(?<![\d.])(480|540|720|1080|1440|2160)\s*p(?![a-z])")
_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_NUMBER = (
    rf"(?:(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_ONES[1:10])}))?"
    rf"|{'|'.join(reversed(_ONES))}|half\s+an?|an?)"
)
_UNITS_MS = {"ms": 1, "millisecond": 1, "s": 1000, "sec": 1000, "second": 1000}
_UNITS_MS |= {"min": 60_000, "minute": 60_000, "秒": 1000, "秒钟": 1000, "分钟": 60_000}
_UNITS_MS |= {"毫秒": 1}
_DIGIT_DURATION = re.compile(
    r"(?<![a-z0-9_.'])(?P<num>\d+(?:\.\d+)?)\s*-?\s*"
    r"(?P<unit>milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|毫秒|秒钟|秒|分钟)(?![a-z])"
)
_WORD_DURATION = re.compile(
    rf"(?<![a-z0-9_'])(?P<num>{_WORD_NUMBER})\s*-?\s*(?P<unit>seconds?|secs?|minutes?|mins?)(?![a-z])"
)
_CJK_DURATION = re.compile(r"(?P<num>[零一二两三四五六七八九十半]+)\s*(?P<unit>秒钟|秒|分钟)")
_DECADE = re.compile(r"\s+(?:music|style|vibes?|songs?|look|feel|aesthetic|hits|pop|rock)\b")
_FACTOR = re.compile(
    r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:x|times)\s+(faster|quicker|slower|as\s+fast|as\s+slow)\b"
)
_CJK_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CJK_DIGITS |= {"五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _numbers(folded: str, hits: list[Hit]) -> list[tuple[int, int]]:
    """Canvas sizes, ratios, resolutions, speed factors and durations, in that order."""
    spans: list[tuple[int, int]] = []

    def taken(start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in spans)

    for m in _CANVAS.finditer(folded):
        ratio, res, note = nearest_canvas(int(m.group(1)), int(m.group(2)))
        hits.append(Hit(m.start(), m.end(), Subject.RATIO, ratio, note=note))
        hits.append(Hit(m.start(), m.end(), Subject.RES, number=res))
        spans.append(m.span())
    for m in _RATIO.finditer(folded):
        known = _KNOWN_RATIOS.get(f"{int(m.group(1))}:{int(m.group(2))}")
        if known and not taken(*m.span()):
            hits.append(Hit(m.start(), m.end(), Subject.RATIO, known[0], note=known[1]))
            spans.append(m.span())
    for m in _RES.finditer(folded):
        if not taken(*m.span()):
            asked = int(m.group(1))
            res = 720 if asked <= 720 else 1080
            note = None if asked in (720, 1080) else f"{asked}p isn't available: used {res}p"
            hits.append(Hit(m.start(), m.end(), Subject.RES, number=res, note=note))
            spans.append(m.span())
    for m in _FACTOR.finditer(folded):
        factor = float(m.group(1))
        if factor > 0 and not taken(*m.span()):
            slower = m.group(2) in ("slower", "as slow")
            hits.append(
                Hit(m.start(), m.end(), Subject.SPEED, number=factor if slower else 1 / factor)
            )
            spans.append(m.span())
    for pattern in (_DIGIT_DURATION, _WORD_DURATION, _CJK_DURATION):
        for m in pattern.finditer(folded):
            ms = _duration_ms(m.group("num"), m.group("unit"))
            decade = m.group("unit") == "s" and _DECADE.match(folded, m.end())
            if ms is None or decade or taken(*m.span()):
                continue
            hits.append(Hit(m.start(), m.end(), Subject.DURATION, number=ms))
            spans.append(m.span())
    return spans


def nearest_canvas(width: int, height: int) -> tuple[str, int, str | None]:
    """The named canvas nearest to ``width`` x ``height``, and a note if it is not exact."""
    if width == height:
        ratio = _1_1
    elif width > height:
        ratio = _16_9
    else:
        ratio = _9_16 if height / max(width, 1) >= 1.5 else _4_5
    res = 1080 if min(width, height) > 720 else 720
    exact = {
        (_16_9, 1080): (1920, 1080),
        (_16_9, 720): (1280, 720),
        (_9_16, 1080): (1080, 1920),
        (_9_16, 720): (720, 1280),
        (_1_1, 1080): (1080, 1080),
        (_1_1, 720): (720, 720),
        (_4_5, 1080): (1080, 1350),
        (_4_5, 720): (720, 900),
    }[(ratio, res)]
    if exact == (width, height):
        return ratio, res, None
    return ratio, res, f"{width}x{height} isn't available: used {exact[0]}x{exact[1]}"


def _duration_ms(number: str, unit: str) -> int | None:
    value = _number_value(number)
    scale = _UNITS_MS.get(unit if unit in ("s", "ms") else unit.rstrip("s"))
    if value is None or scale is None or value <= 0 or value > 100_000:
        return None
    return round(value * scale)


def _number_value(word: str) -> float | None:
    """A number written in digits, English words or Chinese numerals."""
    word = re.sub(r"\s+", " ", word.strip())
    if re.fullmatch(r"\d+(?:\.\d+)?", word):
        return float(word)
    if word in ("a", "an"):
        return 1.0
    if word.startswith("half"):
        return 0.5
    if word in _ONES:
        return float(_ONES.index(word))
    parts = re.split(r"[\s-]", word)
    if parts[0] in _TENS:
        ones = _ONES.index(parts[1]) if len(parts) > 1 and parts[1] in _ONES else 0
        return float(20 + 10 * _TENS.index(parts[0]) + ones)
    return _cjk_value(word)


def _cjk_value(word: str) -> float | None:
    if word == "半":
        return 0.5
    if "十" in word:
        tens, _, ones = word.partition("十")
        if (tens and tens not in _CJK_DIGITS) or (ones and ones not in _CJK_DIGITS):
            return None
        return float(_CJK_DIGITS.get(tens, 1) * 10 + _CJK_DIGITS.get(ones, 0))
    return float(_CJK_DIGITS[word]) if word in _CJK_DIGITS else None


# the phrase table


def _squash(phrase: str) -> str:
    return re.sub(r"[\s\-]+", "", phrase)


def _phrase_pattern(phrase: str) -> str:
    plural = phrase.endswith("(s)")
    words = phrase.removesuffix("(s)").split()
    body = r"[\s\-]*".join(re.escape(w) for w in words) + ("s?" if plural else "")
    head = r"(?<![a-z0-9])" if phrase[0].isascii() and phrase[0].isalnum() else ""
    tail = r"(?![a-z0-9])" if (phrase[-1].isascii() and phrase[-1].isalnum()) or plural else ""
    return head + body + tail


def phrase_keys(phrase: str) -> tuple[str, ...]:
    if phrase.endswith("(s)"):
        bare = _squash(phrase.removesuffix("(s)"))
        return bare, bare + "s"
    return (_squash(phrase),)


RULE_BY_PHRASE: dict[str, Rule] = {
    key: rule for rule, phrases in PHRASES for phrase in phrases for key in phrase_keys(phrase)
}
_ALL_PHRASES = sorted({p for _, phrases in PHRASES for p in phrases}, key=lambda p: (-len(p), p))
_PHRASE = re.compile("|".join(_phrase_pattern(p) for p in _ALL_PHRASES))


def _phrases(folded: str, hits: list[Hit]) -> None:
    for m in _PHRASE.finditer(folded):
        rule = RULE_BY_PHRASE.get(_squash(m.group()))
        if rule is None:  # a spelling the table does not list (e.g. "lo - fi")
            rule = RULE_BY_PHRASE.get(_squash(m.group()).rstrip("s"))
        if rule is not None:
            hits.append(
                Hit(
                    m.start(),
                    m.end(),
                    rule.subject,
                    rule.value,
                    rule.number,
                    rule.negatable,
                    rule.note,
                )
            )


# negation and context

_ANY_BREAK = re.compile(r"[.!?;,\n\u3001\u3002]")  # full-width forms are folded to ASCII
_GAP_WORD = re.compile(r"[a-z0-9']+|[^\x00-\x7f\s]")
_IGNORE_FILLERS = frozenset({"a", "an", "the", "too", "so", "very", "being", "that", "this"})
Settled = list[tuple[Hit, bool]]  # each hit, and whether a negation removes it


def _gap_words(gap: str) -> list[str] | None:
    """The words between two hits, or None if a comma or sentence end separates them."""
    if len(gap) > 48 or _ANY_BREAK.search(gap):
        return None
    return _GAP_WORD.findall(gap)


def _settle(folded: str, hits: list[Hit]) -> Settled:
    """Apply negations: drop what "not"/"from" point at, mark what "no"/"remove" remove.

    "no" reaches the next hit within three words; a removed hit passes the
    negation on to the next one (so "remove the title and the music" removes
    both) unless an affirming word ("add", "with", "use") comes first. A title or
    caption followed by its quoted text is not removed second-hand: in "no music
    and the title 'X'" the title is wanted.
    """
    settled: Settled = []
    remove_end: int | None = None  # end of the last "no" word or removed hit
    by_word = False  # the negation comes straight from a "no" word
    ignore_end: int | None = None
    for i, hit in enumerate(hits):
        if hit.subject is Subject.REMOVE:
            remove_end, by_word = hit.end, True
            continue
        if hit.subject is Subject.IGNORE:
            ignore_end = hit.end
            continue
        if hit.subject in (Subject.AFFIRM, Subject.NOISE):
            remove_end = ignore_end = None
            continue
        if ignore_end is not None:
            words = _gap_words(folded[ignore_end : hit.start])
            ignore_end = None
            if words is not None and set(words) <= _IGNORE_FILLERS and len(words) <= 1:
                continue
        removed = False
        if remove_end is not None:
            words = _gap_words(folded[remove_end : hit.start])
            reaches = words is not None and len(words) <= 3
            quoted = _has_quote_next(folded, hits, i)
            if reaches and hit.subject in REMOVABLE and hit.negatable and (by_word or not quoted):
                removed, remove_end, by_word = True, hit.end, False
            else:
                remove_end = None
        settled.append((hit, removed))
    return settled


def _has_quote_next(folded: str, hits: list[Hit], i: int) -> bool:
    if hits[i].subject not in (Subject.TITLE, Subject.CAPTION):
        return False
    after = next((h for h in hits[i + 1 :] if h.start >= hits[i].end), None)
    if after is None or after.subject is not Subject.QUOTE:
        return False
    words = _gap_words(folded[hits[i].end : after.start])
    return words is not None and len(words) <= 3


_PER_PHOTO_AFTER = re.compile(
    r"\s*(?:(?:per|for\s+each|for\s+every|on\s+each|every|each|a|an|/)\s*"
    r"(?:photo|picture|image|pic|slide|shot|still|one)s?\b|each\b|apiece\b|一张|每张)"
)
_PER_PHOTO_BEFORE = re.compile(
    r"(?:(?:each|every|per)\s+(?:photo|picture|image|pic|slide|shot)s?\s*"
    r"(?:for|gets|lasts|shows\s+for|stays|stay|of|at|:|=|is|should\s+be|to)?\s*"
    r"|每张(?:照片|图片|图)?(?:停留|显示|展示|播放)?\s*|每(?:个|一)?(?:画面|镜头)\s*)$"
)
_TRANSITION_GAP_BEFORE = re.compile(
    r"[\s:=-]*(?:(?:of|lasting|last|duration|length|to|at|is|are|for|时长|为)[\s:=-]*)*"
)


_AND = re.compile(r"\s*(?:and\s*)?")


def _joined_durations(folded: str, settled: Settled) -> Settled:
    """One duration for "1 minute and 30 seconds" or "1 min 30 s"."""
    out: Settled = []
    for hit, removed in settled:
        if out and hit.subject is Subject.DURATION and out[-1][0].subject is Subject.DURATION:
            first = out[-1][0]
            minutes, rest = first.number or 0, hit.number or 0
            joined = minutes % 60_000 == 0 and rest < 60_000
            if joined and _AND.fullmatch(folded, first.end, hit.start):
                out[-1] = (replace(first, end=hit.end, number=minutes + rest), removed)
                continue
        out.append((hit, removed))
    return out


def _durations(folded: str, settled: Settled) -> Settled:
    """Give each duration its role: each photo's, the transitions', or the video's."""
    settled = _joined_durations(folded, settled)
    out: Settled = []
    for i, (hit, removed) in enumerate(settled):
        if hit.subject is not Subject.DURATION:
            out.append((hit, removed))
            continue
        before = folded[max(hit.start - 60, 0) : hit.start]
        role = Subject.LENGTH
        if _PER_PHOTO_AFTER.match(folded, hit.end) or _PER_PHOTO_BEFORE.search(before):
            role = Subject.PER_PHOTO
        elif _next_to_transition(folded, settled, i):
            role = Subject.TRANSITION_MS
        out.append((replace(hit, subject=role), removed))
    return out


def _next_to_transition(folded: str, settled: Settled, i: int) -> bool:
    hit = settled[i][0]
    if i + 1 < len(settled):
        after = settled[i + 1][0]
        gap = folded[hit.end : after.start]
        if after.subject is Subject.TRANSITION and re.fullmatch(r"[\s-]*", gap):
            return True
    if i > 0:
        before = settled[i - 1][0]
        gap = folded[before.end : hit.start]
        if before.subject is Subject.TRANSITION and _TRANSITION_GAP_BEFORE.fullmatch(gap):
            return True
    return False


def _quote_roles(folded: str, settled: Settled) -> Settled:
    """Make each quoted text a title or a caption, by the nearest word that says which.

    Look back in the same clause for "title"/"caption", then ahead ("'Z' as a
    caption"; "'Z' at the end" is a caption). Without either, the first quote is
    the title and later ones are ignored (with a note): guessing captions from bare
    quotes would put text on the video nobody asked for.
    """
    out: Settled = []
    title_taken = any(h.subject is Subject.TITLE_TEXT for h, _ in settled)
    for i, (hit, removed) in enumerate(settled):
        if hit.subject is Subject.CAPTION_TEXT and hit.when is None:
            out.append((replace(hit, when=_caption_when(folded, settled, i)), removed))
            continue
        if hit.subject is not Subject.QUOTE or removed:
            out.append((hit, removed))
            continue
        role = _quote_role(folded, settled, i)
        when = _caption_when(folded, settled, i)
        if role is None and when != "all":
            role = Subject.CAPTION
        if role is None and not title_taken:
            role = Subject.TITLE
        if role is Subject.TITLE:
            title_taken = True
            out.append((replace(hit, subject=Subject.TITLE_TEXT), False))
        elif role is Subject.CAPTION:
            out.append((replace(hit, subject=Subject.CAPTION_TEXT, when=when), False))
        else:
            out.append((replace(hit, subject=Subject.NOISE, note=hit.value), False))
    return out


def _same_clause(folded: str, start: int, end: int) -> bool:
    return end - start <= 80 and not _ANY_BREAK.search(folded[start:end])


def _quote_role(folded: str, settled: Settled, i: int) -> Subject | None:
    hit = settled[i][0]
    for other, _ in reversed(settled[:i]):
        if not _same_clause(folded, other.end, hit.start):
            break
        if other.subject in (Subject.TITLE, Subject.CAPTION):
            return other.subject
    for other, _ in settled[i + 1 :]:
        if not _same_clause(folded, hit.end, other.start):
            break
        if other.subject in (Subject.TITLE, Subject.CAPTION):
            return other.subject
    return None


def _caption_when(folded: str, settled: Settled, i: int) -> When:
    hit = settled[i][0]
    for j in (*range(i - 1, -1, -1), *range(i + 1, len(settled))):
        other = settled[j][0]
        lo, hi = (other.end, hit.start) if j < i else (hit.end, other.start)
        if other.subject is Subject.WHEN and _same_clause(folded, lo, hi):
            return "end" if other.value == "end" else "start"
    return "all"


_QUESTION_OPENERS = frozenset(
    {
        "what", "what's", "whats", "which", "how", "how's", "is", "are", "does", "do", "did",
        "has", "have", "why", "when", "where", "who", "was", "were",
    }
)  # fmt: skip
_CJK_QUESTION = re.compile(r"什么|多长|多久|几张|哪些|几秒|有没有|是否|是不是")


def _is_question(text: str) -> bool:
    """A question about the video, not a request phrased as one ("can you …?" is a request)."""
    stripped = text.strip()
    if _CJK_QUESTION.search(stripped):
        return True
    if not stripped.endswith("?"):
        return False
    first = re.match(r"[a-z']+", _fold(stripped))
    return bool(first and first.group() in _QUESTION_OPENERS)


# from hits to wishes


@dataclass
class _Wants:
    """:class:`Wishes` while they are being read; the last word on a subject wins."""

    wishes: Wishes
    notes: list[str] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)

    def freeze(self) -> Wishes:
        return replace(
            self.wishes, captions=tuple(self.captions), notes=tuple(dict.fromkeys(self.notes))
        )


Handler = Callable[[_Wants, Hit, bool], Wishes]


def _on_ratio(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, ratio=hit.value)


def _on_res(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, res=720 if hit.number == 720 else 1080)


def _on_length(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, length_ms=round(hit.number or 0), per_photo_ms=None)


def _on_per_photo(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, per_photo_ms=round(hit.number or 0), length_ms=None)


def _on_short(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, short=True)


def _on_speed(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, speed=hit.number)


def _on_transition(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if removed:
        return replace(w.wishes, transition=TransitionType.NONE, transition_style_ms=None)
    if hit.value is None:
        return replace(w.wishes, transitions_mentioned=True)
    ms = None if hit.number is None else round(hit.number)
    return replace(w.wishes, transition=TransitionType(hit.value), transition_style_ms=ms)


def _on_transition_ms(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, transition_ms=round(hit.number or 0), transitions_mentioned=True)


def _on_motion(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, motion="none" if removed else hit.value)


def _on_fit(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, fit=Fit(hit.value or Fit.COVER))


def _on_music(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if removed or hit.value == "off":
        return replace(w.wishes, music=False, own_audio=False, mood=None, volume=None)
    return replace(w.wishes, music=True, own_audio=w.wishes.own_audio or hit.value == "own")


def _on_mood(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if removed:
        return w.wishes
    return replace(w.wishes, music=True, mood=Mood(hit.value or Mood.UPBEAT), own_audio=False)


def _on_volume(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return w.wishes if removed else replace(w.wishes, music=True, volume=hit.number)


def _on_title(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if removed:
        return replace(w.wishes, remove_title=True, title=None, title_without_text=False)
    if w.wishes.title is None:
        return replace(w.wishes, title_without_text=True)
    return w.wishes


def _on_title_text(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    text = _shorten(hit.value or "", w.notes)
    return replace(w.wishes, title=text, remove_title=False, title_without_text=False)


def _on_caption(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if removed:
        w.captions.clear()
        return replace(w.wishes, remove_captions=True)
    return w.wishes


def _on_caption_text(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    w.captions.append(Caption(_shorten(hit.value or "", w.notes), hit.when or "all"))
    return w.wishes


def _on_photos(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, add_photos=True)


def _on_start_over(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    return replace(w.wishes, start_over=True)


def _on_noise(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    if hit.note:  # quoted text that is neither the title nor a caption
        w.notes.append(
            f"ignored the quoted text '{hit.note}' (say 'caption' to add it as a caption)"
        )
    return w.wishes


def _on_nothing(w: _Wants, hit: Hit, removed: bool) -> Wishes:
    """Words that shape others (negations, "at the end") ask for nothing themselves."""
    return w.wishes


def _shorten(text: str, notes: list[str]) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    notes.append(f"text longer than {MAX_TEXT_CHARS} characters was cut to fit the frame")
    return text[:MAX_TEXT_CHARS].rstrip()


_HANDLERS: dict[Subject, Handler] = {
    Subject.RATIO: _on_ratio,
    Subject.RES: _on_res,
    Subject.DURATION: _on_length,
    Subject.LENGTH: _on_length,
    Subject.PER_PHOTO: _on_per_photo,
    Subject.TRANSITION_MS: _on_transition_ms,
    Subject.SHORT: _on_short,
    Subject.SPEED: _on_speed,
    Subject.TRANSITION: _on_transition,
    Subject.MOTION: _on_motion,
    Subject.FIT: _on_fit,
    Subject.MUSIC: _on_music,
    Subject.MOOD: _on_mood,
    Subject.VOLUME: _on_volume,
    Subject.TITLE: _on_title,
    Subject.TITLE_TEXT: _on_title_text,
    Subject.CAPTION: _on_caption,
    Subject.CAPTION_TEXT: _on_caption_text,
    Subject.QUOTE: _on_nothing,
    Subject.WHEN: _on_nothing,
    Subject.PHOTOS: _on_photos,
    Subject.START_OVER: _on_start_over,
    Subject.REMOVE: _on_nothing,
    Subject.IGNORE: _on_nothing,
    Subject.AFFIRM: _on_nothing,
    Subject.NOISE: _on_noise,
}


def _apply(w: _Wants, hit: Hit, removed: bool) -> None:
    """One hit's effect; a hit that asks for something makes the prompt understood."""
    w.wishes = _HANDLERS[hit.subject](w, hit, removed)
    if hit.subject in _REQUESTS:
        w.wishes = replace(w.wishes, understood=True)
        if hit.note and not removed:
            w.notes.append(hit.note)
