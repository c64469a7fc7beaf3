"""Interface text in English and Simplified Chinese, and the label-script check (pure).

One table serves both sides: component labels go to Gradio's ``gr.I18n``
(the browser picks by its language), and text made by handlers is looked up
with the request's ``Accept-Language``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["LANGUAGES", "MESSAGES", "foreign_script_labels", "pick_language", "t"]

LANGUAGES = ("en", "zh-CN")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "## earmark: what is that sound?",
        "intro": "Name the sounds you expect; earmark scores the audio against each name (zero-shot CLAP).",
        "tab_classify": "Classify",
        "tab_live": "Live",
        "audio": "Audio: drop a file, record, or pick an example",
        "labels": "Labels (commas or new lines)",
        "labels_placeholder": "dog barking, glass breaking, smoke alarm",
        "pack": "Classifier",
        "pack_zero_shot": "zero-shot (labels below)",
        "pack_note": (
            "Labels come from classifier pack {name} ({n} training examples, cross-validated accuracy {acc}); "
            "its trained head scores them. Choose zero-shot to type your own labels."
        ),
        "preset": "Label presets",
        "preset_home": "Home security",
        "preset_industrial": "Industrial",
        "preset_animals": "Animals",
        "preset_esc50": "ESC-50 classes (50)",
        "preset_test": "Synthetic test sounds (tiny test model)",
        "threshold": "Confidence threshold (below it the answer is 'uncertain')",
        "template": "Prompt template ({label} is replaced by each label)",
        "classify": "Classify",
        "examples": "Examples",
        "result": "Result",
        "scores": "All scores",
        "timeline": "Timeline: what is heard when",
        "segments": "Segments",
        "download": "Download results (JSON, CSV)",
        "answer": "Answer",
        "uncertain": "uncertain",
        "uncertain_detail": "best guess {label} ({p}) is below the threshold {t}",
        "top3": "Top 3",
        "threshold_mark": "threshold",
        "col_label": "label",
        "col_start": "start (s)",
        "col_end": "end (s)",
        "col_peak": "peak",
        "duration": "{s} s of audio, {n} window(s), model {model}",
        "pack_used": "scored by classifier pack {name}",
        "warn_script": (
            "Some labels are not in the Latin script ({labels}). The model's text encoder was trained on "
            "English text, so their scores will be poor: use English labels."
        ),
        "nothing_heard": "nothing above the threshold",
        "no_audio": "Add an audio file, record, or pick an example first.",
        "busy": "The server is busy; try again in {s} s.",
        "error": "Cannot classify: {reason}",
        "live_intro": "Press record: the page classifies the most recent seconds of sound, again and again.",
        "live_mic": "Microphone",
        "live_now": "Now",
        "live_history": "Recent results (newest first)",
        "live_waiting": "listening…",
        "live_level": "level",
        "live_cadence": "the last {window} s, every {every} s",
        "col_confidence": "confidence",
        "live_time": "time",
        "live_clear": "Clear",
        "live_stream_note": "Echo cancellation, noise suppression and auto gain are off: the page hears the room as it is.",
        "uncertain_guess": "uncertain (best guess: {label}, {p})",
        "live_answer": "answer",
        "live_strip": "recent answers, oldest left; bar height is the confidence",
        "live_legend": "colours",
        "live_legend_faint": "faint: below the threshold (uncertain)",
        "live_skipped": (
            "{n} window(s) skipped: the model is slower than real time here, so the newest audio "
            "is classified and older windows are dropped rather than queued"
        ),
    },
    "zh-CN": {
        "title": "## earmark：这是什么声音？",
        "intro": "写下您预期的声音名称；earmark 将音频与每个名称逐一比对打分（零样本 CLAP）。",
        "tab_classify": "分类",
        "tab_live": "实时",
        "audio": "音频：拖入文件、录音或选择示例",
        "labels": "标签（用逗号或换行分隔）",
        "labels_placeholder": "dog barking, glass breaking, smoke alarm",
        "pack": "分类器",
        "pack_zero_shot": "零样本（使用下方标签）",
        "pack_note": "标签来自分类器包 {name}（{n} 个训练样本，交叉验证准确率 {acc}），由其训练好的分类头打分。选择零样本即可输入自己的标签。",
        "preset": "标签预设",
        "preset_home": "家居安防",
        "preset_industrial": "工业",
        "preset_animals": "动物",
        "preset_esc50": "ESC-50 类别（50 个）",
        "preset_test": "合成测试声音（微型测试模型）",
        "threshold": "置信度阈值（低于此值时结果为“不确定”）",
        "template": "提示模板（{label} 会被每个标签替换）",
        "classify": "分类",
        "examples": "示例",
        "result": "结果",
        "scores": "全部得分",
        "timeline": "时间线：何时听到什么",
        "segments": "片段",
        "download": "下载结果（JSON、CSV）",
        "answer": "答案",
        "uncertain": "不确定",
        "uncertain_detail": "最可能是 {label}（{p}），低于阈值 {t}",
        "top3": "前三",
        "threshold_mark": "阈值",
        "col_label": "标签",
        "col_start": "开始（秒）",
        "col_end": "结束（秒）",
        "col_peak": "峰值",
        "duration": "音频 {s} 秒，{n} 个窗口，模型 {model}",
        "pack_used": "由分类器包 {name} 打分",
        "warn_script": (
            "部分标签不是拉丁字母（{labels}）。模型的文本编码器只用英文训练，这些标签的得分会很差：请使用英文标签。"
        ),
        "nothing_heard": "没有超过阈值的声音",
        "no_audio": "请先添加音频文件、录音或选择示例。",
        "busy": "服务器繁忙，请在 {s} 秒后重试。",
        "error": "无法分类：{reason}",
        "live_intro": "按下录音：页面会不断对最近几秒的声音进行分类。",
        "live_mic": "麦克风",
        "live_now": "当前",
        "live_history": "最近结果（最新在前）",
        "live_waiting": "正在听…",
        "live_level": "电平",
        "live_cadence": "最近 {window} 秒，每 {every} 秒",
        "col_confidence": "置信度",
        "live_time": "时间",
        "live_clear": "清除",
        "live_stream_note": "回声消除、降噪和自动增益均已关闭：页面听到的是房间里真实的声音。",
        "uncertain_guess": "不确定（最可能：{label}，{p}）",
        "live_answer": "结果",
        "live_strip": "最近的结果，最早的在左；柱高表示置信度",
        "live_legend": "颜色",
        "live_legend_faint": "浅色：低于阈值（不确定）",
        "live_skipped": "已跳过 {n} 个窗口：此处模型慢于实时，因此只分类最新的音频，较早的窗口被丢弃而不是排队",
    },
}


def pick_language(accept_language: str | None) -> str:
    """The interface language for an ``Accept-Language`` header: ``zh-CN`` for any Chinese, else ``en``."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag:
            ranked.append((-q, i, tag.lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def t(key: str, lang: str = "en", **values: object) -> str:
    """The message ``key`` in ``lang`` (English when missing), formatted with ``values``."""
    text = MESSAGES.get(lang, MESSAGES["en"]).get(key) or MESSAGES["en"][key]
    return text.format(**values) if values else text


def foreign_script_labels(labels: Iterable[str]) -> list[str]:
    """Labels with letters outside the Latin script (the English CLAP text encoders never saw them)."""
    return [label for label in labels if any(_non_latin_letter(c) for c in label)]


def _non_latin_letter(c: str) -> bool:
    return c.isalpha() and not unicodedata.name(c, "").startswith("LATIN")
