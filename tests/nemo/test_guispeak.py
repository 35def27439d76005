"""GUI talk from the backend, translated for API users, with the API action it implies."""

from __future__ import annotations

import pytest

from nemo import ApiAction, translate

EXPORT, STATE, EDIT, SUMMARY, CREDITS = (
    ApiAction.EXPORT,
    ApiAction.READ_STATE,
    ApiAction.SEND_EDIT,
    ApiAction.SUMMARISE,
    ApiAction.READ_CREDITS,
)
EN_EXPORT = "The video is ready to export."
EN_STATE = "The details are in the current state of the timeline."
EN_EDIT = "To change it, send another edit instruction."
EN_SUMMARY = "The timeline summary shows what the video contains."
EN_CREDITS = "The credit balance can be read through the API."
ZH_EXPORT = "视频已可以导出\u3002"
ZH_STATE = "详细信息在时间线的当前状态中\u3002"
ZH_EDIT = "如需修改\uff0c请再发送一条编辑指令\u3002"
ZH_SUMMARY = "时间线摘要展示了视频的内容\u3002"
ZH_CREDITS = "积分余额可通过 API 查询\u3002"

PHRASES = [
    # English
    ("Click Export to download your video.", EN_EXPORT, (EXPORT,)),
    (
        "Your video is ready! Click the Export button in the top right corner.",
        f"Your video is ready! {EN_EXPORT}",
        (EXPORT,),
    ),
    ("Hit export when you're happy with it.", EN_EXPORT, (EXPORT,)),
    ("When you are happy with it, click Export.", EN_EXPORT, (EXPORT,)),
    (
        "Your video is ready, click Export to download it.",
        f"Your video is ready. {EN_EXPORT}",
        (EXPORT,),
    ),
    ("Open the music panel to choose a different track.", EN_STATE, (STATE,)),
    ("You can adjust the volume in the audio panel.", EN_STATE, (STATE,)),
    ("Drag the clip to reorder your photos.", EN_EDIT, (EDIT,)),
    ("Drag and drop the title onto the second clip.", EN_EDIT, (EDIT,)),
    ("Right-click a clip to delete it.", EN_EDIT, (EDIT,)),
    ("Click the Music tab to pick another song.", EN_EDIT, (EDIT,)),
    ("Use the slider to trim the clip.", EN_EDIT, (EDIT,)),
    ("Preview in the timeline to see the result.", EN_SUMMARY, (SUMMARY,)),
    ("Take a look at the timeline.", EN_SUMMARY, (SUMMARY,)),
    ("Check your account for remaining credits.", EN_CREDITS, (CREDITS,)),
    ("Not enough credits, check your account.", f"Not enough credits. {EN_CREDITS}", (CREDITS,)),
    (
        "Here is what I changed. Open the settings panel, then click Export.",
        f"Here is what I changed. {EN_STATE} {EN_EXPORT}",
        (STATE, EXPORT),
    ),
    (
        "I added music; drag the clip to reorder, and preview in the timeline!",
        f"I added music! {EN_EDIT} {EN_SUMMARY}",
        (EDIT, SUMMARY),
    ),
    # Chinese
    ("点击导出按钮即可下载视频\u3002", ZH_EXPORT, (EXPORT,)),
    (
        "已为您添加背景音乐\u3002请点击右上角的\u201c导出\u201d\u3002",
        f"已为您添加背景音乐\u3002{ZH_EXPORT}",
        (EXPORT,),
    ),
    ("完成后可以直接导出视频\uff01", ZH_EXPORT, (EXPORT,)),
    ("打开音乐面板选择其他曲目\u3002", ZH_STATE, (STATE,)),
    ("您可以拖拽片段来调整顺序\u3002", ZH_EDIT, (EDIT,)),
    ("双击文字即可编辑\u3002", ZH_EDIT, (EDIT,)),
    ("点击音乐图标更换背景音乐\u3002", ZH_EDIT, (EDIT,)),
    ("在时间线中预览效果\u3002", ZH_SUMMARY, (SUMMARY,)),
    ("请前往账户页面查看积分余额\u3002", ZH_CREDITS, (CREDITS,)),
    ("积分不足\uff0c请充值\u3002", f"积分不足\u3002{ZH_CREDITS}", (CREDITS,)),
    ("拖动片段后\uff0c点击导出\u3002", f"{ZH_EDIT}{ZH_EXPORT}", (EDIT, EXPORT)),
]


@pytest.mark.parametrize(("text", "expected", "actions"), PHRASES, ids=[row[0] for row in PHRASES])
def test_gui_instructions_become_api_text_and_actions(text, expected, actions):
    translation = translate(text)
    assert translation.text == expected
    assert translation.actions == actions
    assert translation.changed


@pytest.mark.parametrize(
    "text",
    [
        "I added lo-fi music and the title Urban Dreams.",
        "I added a drop shadow to the title.",
        "Your export is being prepared.",
        "我已将视频比例改为9:16\u3002",
        "已为您导出视频\u3002",
        "  Leading and trailing spaces stay.  ",
    ],
)
def test_text_without_gui_instructions_is_left_exactly_as_it_was(text):
    translation = translate(text)
    assert translation.text == text
    assert translation.actions == ()
    assert not translation.changed


def test_a_replacement_is_said_once_even_when_asked_for_twice():
    translation = translate("Click Export. Then hit the export button again.")
    assert translation.text == EN_EXPORT
    assert translation.actions == (EXPORT,)


def test_a_summary_stands_in_for_the_preview_when_given():
    summary = "Timeline (1 track): 1. Video: a.jpg (0-3s)"
    translation = translate("Preview it in the timeline.", summary=summary)
    assert translation.text == f"{summary}."


def test_sentences_on_separate_lines_keep_their_line_breaks():
    translation = translate("I added music.\nDrag the clip to move it.\nEnjoy!")
    assert translation.text == f"I added music.\n{EN_EDIT}\nEnjoy!"
