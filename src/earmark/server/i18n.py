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
        "api_links": (
            "Use via API: the REST API under `/api/v1`, documented at [/docs](/docs) (try it there) "
            "and [/redoc](/redoc)."
        ),
        "tab_library": "Library",
        "tab_events": "Events",
        "lib_search_title": "### Search the library",
        "lib_query": "Describe the sound",
        "lib_k": "Files",
        "lib_search": "Search",
        "lib_play": "Play",
        "lib_h_score": "score",
        "lib_h_from": "from s",
        "lib_h_to": "to s",
        "lib_h_label": "label",
        "lib_h_path": "path",
        "lib_h_id": "id",
        "lib_found": "{n} files",
        "lib_empty": (
            "Nothing found. The library is filled by tagging folders: "
            '`earmark tag ~/Sounds -l "rain, traffic, speech"` (with this server\'s database), then search again.'
        ),
        "lib_review_title": "### Review queue",
        "lib_listen": "Listen",
        "lib_relabel_label": "Label (for relabel)",
        "lib_accept": "Accept",
        "lib_relabel": "Relabel",
        "lib_skip": "Skip",
        "lib_refresh": "Refresh",
        "lib_review_empty": (
            "Nothing to review. Files tagged below the confidence bar come here: "
            '`earmark tag DIR -l "…" --min-confidence 0.7`.'
        ),
        "ev_intro": (
            "Events raised by `earmark monitor`, newest first; the list refreshes itself. "
            "Pick an event to hear its clip, see its spectrogram and mark it correct or a false alarm."
        ),
        "ev_filter_label": "Label",
        "ev_filter_source": "Source",
        "ev_filter_day": "Day (UTC)",
        "ev_refresh": "Refresh",
        "ev_started": "started (UTC)",
        "ev_source": "source",
        "ev_label": "label",
        "ev_length": "length (s)",
        "ev_peak": "peak",
        "ev_verdict": "verdict",
        "ev_clip": "clip",
        "ev_id": "id",
        "ev_verdict_correct": "correct",
        "ev_verdict_false_alarm": "false alarm",
        "ev_verdict_none": "no verdict",
        "ev_empty": (
            "No events yet. Events appear here while a monitor writes to this server's database: "
            '`earmark monitor SOURCE -l "glass breaking, speech, silence" --alert "glass breaking" --clips-dir clips/`.'
        ),
        "ev_gone": "This event is no longer in the log.",
        "ev_details": "peak {peak} · rule {rule}",
        "ev_marked": "marked: {verdict}",
        "ev_no_clip": "No clip was kept for this event (give the monitor --clips-dir to keep clips).",
        "ev_mark_correct": "✓ Correct",
        "ev_mark_false": "✗ False alarm",
        "ev_mark_clear": "Clear verdict",
        "ev_pick_first": "Pick an event in the list first.",
        "ev_saved": "Saved: {verdict}.",
        "ev_spectrogram": "Spectrogram (time →, frequency ↑)",
        "ev_counts_title": "### Events per label",
        "ev_by_hour": "per hour",
        "ev_by_day": "per day",
        "ev_when_hour": "hour (UTC)",
        "ev_when_day": "day (UTC)",
        "ev_export_title": (
            "### Export verdicts as labelled examples\n"
            "Correct events become examples of their label, false alarms examples of the background label: "
            "a folder of clips and a `manifest.csv` that `earmark calibrate` and `earmark fit` read."
        ),
        "ev_export_folder": "Folder (on the server)",
        "ev_export_background": "Label for false alarms",
        "ev_export": "Export",
        "ev_export_none": "Nothing to export yet: mark some events correct or false alarm first.",
        "ev_exported": (
            "{n} example(s) ({counts}) in `{manifest}`. Next: `earmark calibrate {manifest}` "
            "(thresholds) or `earmark fit {manifest} -o alarms.pack.json` (a pack)."
        ),
        "ev_export_noclip": "{n} judged event(s) without a clip were left out.",
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
        "api_links": "通过 API 使用：REST API 位于 `/api/v1`，文档见 [/docs](/docs)（可直接试用）和 [/redoc](/redoc)。",
        "tab_library": "声音库",
        "tab_events": "事件",
        "lib_search_title": "### 搜索声音库",
        "lib_query": "描述声音",
        "lib_k": "文件数",
        "lib_search": "搜索",
        "lib_play": "播放",
        "lib_h_score": "相似度",
        "lib_h_from": "起（秒）",
        "lib_h_to": "止（秒）",
        "lib_h_label": "标签",
        "lib_h_path": "路径",
        "lib_h_id": "编号",
        "lib_found": "{n} 个文件",
        "lib_empty": '没有找到。声音库由标注文件夹填充：`earmark tag ~/Sounds -l "rain, traffic, speech"`（使用本服务器的数据库），然后再搜索。',
        "lib_review_title": "### 复核队列",
        "lib_listen": "试听",
        "lib_relabel_label": "标签（用于改标）",
        "lib_accept": "接受",
        "lib_relabel": "改标",
        "lib_skip": "跳过",
        "lib_refresh": "刷新",
        "lib_review_empty": '没有待复核的文件。置信度低于门槛的文件会出现在这里：`earmark tag DIR -l "…" --min-confidence 0.7`。',
        "ev_intro": "`earmark monitor` 产生的事件，最新的在前；列表会自动刷新。选择一个事件即可收听片段、查看频谱图，并标记为正确或误报。",
        "ev_filter_label": "标签",
        "ev_filter_source": "来源",
        "ev_filter_day": "日期（UTC）",
        "ev_refresh": "刷新",
        "ev_started": "开始时间（UTC）",
        "ev_source": "来源",
        "ev_label": "标签",
        "ev_length": "时长（秒）",
        "ev_peak": "峰值",
        "ev_verdict": "判定",
        "ev_clip": "片段",
        "ev_id": "编号",
        "ev_verdict_correct": "正确",
        "ev_verdict_false_alarm": "误报",
        "ev_verdict_none": "未判定",
        "ev_empty": '还没有事件。监控程序写入本服务器的数据库时，事件会出现在这里：`earmark monitor SOURCE -l "glass breaking, speech, silence" --alert "glass breaking" --clips-dir clips/`。',
        "ev_gone": "该事件已不在日志中。",
        "ev_details": "峰值 {peak} · 规则 {rule}",
        "ev_marked": "已标记：{verdict}",
        "ev_no_clip": "此事件没有保存片段（给监控程序加上 --clips-dir 以保存片段）。",
        "ev_mark_correct": "✓ 正确",
        "ev_mark_false": "✗ 误报",
        "ev_mark_clear": "清除判定",
        "ev_pick_first": "请先在列表中选择一个事件。",
        "ev_saved": "已保存：{verdict}。",
        "ev_spectrogram": "频谱图（时间 →，频率 ↑）",
        "ev_counts_title": "### 各标签的事件数",
        "ev_by_hour": "按小时",
        "ev_by_day": "按天",
        "ev_when_hour": "小时（UTC）",
        "ev_when_day": "日期（UTC）",
        "ev_export_title": "### 将判定导出为带标签的样本\n正确的事件成为其标签的样本，误报成为背景标签的样本：一个片段文件夹和一个 `manifest.csv`，可供 `earmark calibrate` 和 `earmark fit` 读取。",
        "ev_export_folder": "文件夹（服务器上）",
        "ev_export_background": "误报使用的标签",
        "ev_export": "导出",
        "ev_export_none": "还没有可导出的内容：请先将一些事件标记为正确或误报。",
        "ev_exported": "{n} 个样本（{counts}）位于 `{manifest}`。下一步：`earmark calibrate {manifest}`（阈值）或 `earmark fit {manifest} -o alarms.pack.json`（分类器包）。",
        "ev_export_noclip": "已略过 {n} 个没有片段的已判定事件。",
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
