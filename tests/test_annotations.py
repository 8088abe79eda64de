"""Annotation readers (official formats), caption pre-processing and row validation."""
from __future__ import annotations

import json
import logging
import random

import pytest

from internvideo2.data.annotations import (
    read_classification,
    read_csv,
    read_image_text,
    read_instruction,
    read_jsonl,
    read_multiple_choice,
    read_retrieval,
    read_video_text,
    read_videomae_multi,
    resolve_path,
)
from internvideo2.data.text import ACTION_PROMPTS, action_texts, filter_captions, pre_text, sample_caption
from internvideo2.errors import AnnotationError


def _json(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


# --------------------------------------------------------------------------------------------- pre_text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A Man's dog-walk: (fun)!", "a mans dog walk fun"),
        ("  Hello,   World. ", "hello world"),
        ("<person> opens a door/window", "person opens a door window"),
        ('He said "hi"; ok? #tag *star* ~wave', "he said hi ok tag star wave"),
        ("a--b", "a b"),  # two replaced dashes make a run of spaces, collapsed
        ("line\nbreak", "line\nbreak"),  # official quirk: a single newline is not collapsed
        ("tabs\t\tand  spaces\n", "tabs and spaces"),
        ("", ""),
    ],
)
def test_pre_text_official_examples(raw, expected):
    assert pre_text(raw) == expected


def test_pre_text_truncates_words_and_helpers():
    assert pre_text("One two three four", max_l=2) == "one two"
    assert pre_text("One two", max_l=5) == "one two"
    assert filter_captions(["a dog", "hi!", "  ", "two words"], 2) == ["a dog", "two words"]
    rng = random.Random(0)
    picks = {sample_caption(["a", "b", "c"], rng) for _ in range(50)}
    assert picks == {"a", "b", "c"}
    assert sample_caption(["a", "b"]) == "a" and sample_caption("x") == "x"
    texts = action_texts(["Riding a bike", "jumping"])
    assert len(ACTION_PROMPTS) == 16 and len(texts) == 32
    assert texts[0] == "a photo of action riding a bike" and texts[16] == "a photo of action jumping"
    assert texts[11] == "can you recognize the action of riding a bike"


# ------------------------------------------------------------------------------------------ video-text


def test_read_video_text_and_path_resolution(tmp_path):
    p = _json(tmp_path, "train.json", [
        {"video": "a.mp4", "caption": "A dog runs."},
        {"video": "/abs/b.mp4", "captions": ["one", "two words here"], "duration": 3},
        {"video": "s3://bucket/c.mp4", "caption": ["x y", "z"], "video_start_frame": 3, "video_end_frame": 9},
        {"video": "d.mp4", "caption": "clip", "start": 1.5, "end": 4.0, "audio": "d.wav"},
    ])
    ann = read_video_text(p, data_root="/data/root")
    assert len(ann) == 4 and ann.num_skipped == 0
    assert ann[0].path == "/data/root/a.mp4" and ann[0].captions == ["A dog runs."]
    assert ann[1].path == "/abs/b.mp4" and ann[1].captions == ["one", "two words here"]
    assert ann[1].extra == {"duration": 3}
    assert ann[2].path == "s3://bucket/c.mp4" and (ann[2].start_frame, ann[2].end_frame) == (3, 9)
    assert (ann[3].start, ann[3].end, ann[3].audio) == (1.5, 4.0, "/data/root/d.wav")
    # default root: the annotation file's folder
    assert read_video_text(p)[0].path == str(tmp_path / "a.mp4")
    assert resolve_path("s3://b/root", "x.mp4") == "s3://b/root/x.mp4"
    # the official length filter drops captions with < 2 words, and rows left without captions
    filt = read_video_text(p, "/r", min_caption_length=2)
    assert [r.captions for r in filt] == [["A dog runs."], ["two words here"], ["x y"]]
    assert filt.rows == [0, 1, 2]


def test_read_video_text_collects_every_bad_row(tmp_path):
    p = _json(tmp_path, "bad.json", [
        {"video": "ok.mp4", "caption": "fine caption"},
        {"caption": "no video"},
        {"video": "x.mp4", "caption": 42},
        {"video": "y.mp4", "caption": "c", "start": 5, "end": 2},
        "not an object",
        {"video": "z.mp4", "captions": []},
    ])
    with pytest.raises(AnnotationError) as ei:
        read_video_text(p)
    e = ei.value
    assert e.path == str(p) and e.row == 1 and "'video' missing" in e.reason
    assert [r for r, _ in e.problems] == [1, 2, 3, 4, 5]
    msg = str(e)
    assert "5 bad rows" in msg and "row 2: field 'caption'" in msg and "row 3: field 'end'" in msg


def test_skip_policy_logs_and_counts(tmp_path, caplog):
    p = _json(tmp_path, "bad.json", [{"video": "a.mp4", "caption": "ok"}, {"video": "", "caption": "x"}])
    with caplog.at_level(logging.WARNING, logger="internvideo2.data"):
        ann = read_video_text(p, on_bad="skip")
    assert len(ann) == 1 and ann.num_skipped == 1
    assert any("row 1 skipped" in r.message and str(p) in r.message for r in caplog.records)


def test_broken_files(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('[{"video": "a.mp4", "caption": "x"},\n {"video": ')
    with pytest.raises(AnnotationError) as ei:
        read_video_text(p)
    assert "invalid JSON" in ei.value.reason and ei.value.row == "line 2"
    with pytest.raises(AnnotationError, match="JSON list"):
        read_video_text(_json(tmp_path, "obj.json", {"video": "a"}))
    with pytest.raises(AnnotationError, match="file not found"):
        read_video_text(tmp_path / "nope.json")


def test_read_image_text_with_crop_bbox(tmp_path):
    p = _json(tmp_path, "img.json", [
        {"image": "a.jpg", "caption": "a cat", "crop_bbox": [0, 0, 10, 20]},
        {"image": "b.jpg", "caption": "bad box", "crop_bbox": [5, 5, 5, 9]},
    ])
    with pytest.raises(AnnotationError) as ei:
        read_image_text(p)
    assert ei.value.row == 1 and "crop_bbox" in ei.value.reason
    ann = read_image_text(p, on_bad="skip")
    assert ann[0].media_type == "image" and ann[0].crop_bbox == (0.0, 0.0, 10.0, 20.0)


# ------------------------------------------------------------------------------------------- retrieval


def test_read_retrieval_multi_text_gt(tmp_path):
    p = _json(tmp_path, "test.json", [
        {"video": "v0.mp4", "caption": ["A dog.", "The Dog runs!"]},
        {"video": "v1.mp4", "caption": "a cat"},
    ])
    r = read_retrieval(p, "/d")
    assert r.media == ["/d/v0.mp4", "/d/v1.mp4"]
    assert r.texts == ["a dog", "the dog runs", "a cat"]
    assert r.vid2txt == [[0, 1], [2]] and r.txt2vid == [0, 0, 1]
    para = read_retrieval(p, "/d", paragraph=True, max_txt_l=64)
    assert para.texts == ["a dog the dog runs", "a cat"] and para.txt2vid == [0, 1] and para.max_txt_l == 64


def test_read_retrieval_multi_vision_gt_and_action_recognition(tmp_path):
    p = _json(
        tmp_path,
        "mv.json",
        [{"video": ["a.mp4", "b.mp4"], "caption": "push"}, {"video": "c.mp4", "caption": "pull"}],
    )
    r = read_retrieval(p, "/d", multi_vision_gt=True)
    assert r.texts == ["push", "pull"] and r.txt2vid == [[0, 1], [2]] and r.vid2txt == [0, 0, 1]
    k = _json(tmp_path, "k400.json", [
        {"video": "1.mp4", "caption": "zumba"}, {"video": "2.mp4", "caption": "abseiling"},
        {"video": "3.mp4", "caption": "zumba"},
    ])
    a = read_retrieval(k, "/d", is_act_rec=True)
    assert a.classes == ["abseiling", "zumba"] and a.num_prompts == 16 and len(a.texts) == 32
    assert a.vid2txt == [1, 0, 1] and a.txt2vid == [[1], [0, 2]]
    assert a.texts[16 + 13] == "a video of zumba"
    bad = _json(tmp_path, "badret.json", [{"video": "a.mp4"}, {"video": "b.mp4", "caption": ["x", 3]}])
    with pytest.raises(AnnotationError) as ei:
        read_retrieval(bad)
    assert ei.value.row == 0 and [r for r, _ in ei.value.problems] == [0, 1]


# -------------------------------------------------------------------------------------- classification


def test_read_classification_formats(tmp_path):
    csv_p = tmp_path / "train.csv"
    csv_p.write_text("path,label\nclips/a.mp4,3\n\"clips/with,comma.mp4\",0\n")
    ann = read_classification(csv_p, "/data")
    assert [(r.path, r.label) for r in ann] == [("/data/clips/a.mp4", 3), ("/data/clips/with,comma.mp4", 0)]
    kin = tmp_path / "val.txt"
    kin.write_text("abseiling/x y.mp4 0\nzumba/z.mp4 399\n\n")
    ann = read_classification(kin, "/k", num_classes=400)
    assert [(r.path, r.label) for r in ann] == [("/k/abseiling/x y.mp4", 0), ("/k/zumba/z.mp4", 399)]
    assert ann.rows == [1, 2]
    names = tmp_path / "names.csv"
    names.write_text("a.mp4,walking\nb.mp4,running\nc.mp4,walking\n")
    ann = read_classification(names)
    assert [r.label for r in ann] == [1, 0, 1] and ann[0].extra["label_name"] == "walking"
    js = _json(tmp_path, "cls.json", [{"video": "a.mp4", "label": 2, "start": 1.0, "end": 2.0}])
    r = read_classification(js, "/j")[0]
    assert (r.path, r.label, r.start, r.end) == ("/j/a.mp4", 2, 1.0, 2.0)


def test_read_classification_bad_rows(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a.mp4 1\nno_label_here\nb.mp4 7\nc.mp4 -1\n")
    with pytest.raises(AnnotationError) as ei:
        read_classification(p, num_classes=5)
    e = ei.value
    assert e.row == 2 and [r for r, _ in e.problems] == [2, 3, 4]
    assert "out of range" in str(e)
    assert len(read_classification(p, num_classes=5, on_bad="skip")) == 1


def test_read_videomae_multi(tmp_path):
    p = tmp_path / "train_1.1M.csv"
    p.write_text("k400 vids/a.mp4 -1 -1 -1 5\nanet vids/long video.mp4 120.0 10.5 20.0 7\n"
                 "ssv2 vids/c.webm 3 2 1 4\nbroken line\n")
    with pytest.raises(AnnotationError) as ei:
        read_videomae_multi(p, "/r")
    assert [r for r, _ in ei.value.problems] == [3, 4]
    ann = read_videomae_multi(p, "/r", on_bad="skip")
    a, b = ann.records
    assert (a.source, a.path, a.target, a.has_range) == ("k400", "/r/vids/a.mp4", 5, False)
    assert (b.path, b.total_time, b.start_time, b.end_time, b.has_range) == (
        "/r/vids/long video.mp4",
        120.0,
        10.5,
        20.0,
        True,
    )
    c = b.as_classification()
    assert (c.label, c.start, c.end, c.source) == (7, 10.5, 20.0, "anet")


# ------------------------------------------------------------------------------------------------- QA


def test_read_multiple_choice_both_styles(tmp_path):
    p = _json(tmp_path, "mc.json", [
        {"video": "a.mp4", "caption": ["o1", "o2", "o3", "o4", "o5"], "answer": 2},
        {"video": "b.mp4", "option": ["x", "y", "z"], "answer": [0, 1, 1]},  # Charades multi-hot
        {"video": "c.mp4", "option": ["x", "y"], "answer": "1"},
    ])
    ann = read_multiple_choice(p, "/m")
    assert ann[0].options == ["o1", "o2", "o3", "o4", "o5"] and ann[0].answer == 2
    assert ann[1].answer == [1, 2] and ann[2].answer == 1
    bad = _json(tmp_path, "mcbad.json", [
        {"video": "a.mp4", "caption": ["o1", "o2"], "answer": 5},
        {"video": "b.mp4", "option": "not a list", "answer": 0},
        {"video": "c.mp4", "option": ["a", "b"]},
    ])
    with pytest.raises(AnnotationError) as ei:
        read_multiple_choice(bad)
    assert [r for r, _ in ei.value.problems] == [0, 1, 2]
    assert "out of range" in ei.value.reason


def test_read_instruction(tmp_path):
    p = _json(tmp_path, "it.json", [
        {"video": "a.mp4", "QA": [{"i": "Describe.", "q": "", "a": "A dog runs."}], "start": 1, "end": 3},
        {"image": "b.jpg", "QA": [{"i": "", "q": "What?", "a": "A cat."}, {"q": "More?", "a": "No."}]},
        {"video": "c.mp4", "QA": []},
        {"video": "d.mp4", "QA": [{"i": "x", "q": "y"}]},
    ])
    with pytest.raises(AnnotationError) as ei:
        read_instruction(p)
    assert [r for r, _ in ei.value.problems] == [2, 3] and "QA[0].a" in str(ei.value)
    ann = read_instruction(p, "/v", on_bad="skip")
    assert ann[0].media_type == "video" and (ann[0].start, ann[0].end) == (1.0, 3.0)
    assert ann[0].qa[0].q == "" and ann[1].media_type == "image" and ann[1].qa[1].i == ""
    assert ann[1].path == "/v/b.jpg"


# -------------------------------------------------------------------------------------------- generic


def test_read_jsonl_and_csv(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"video": "a.mp4", "caption": "x"}\n\n{"video": "b.mp4"}\n[1]\n{bad\n')
    with pytest.raises(AnnotationError) as ei:
        read_jsonl(j, required=["video", "caption"])
    assert [r for r, _ in ei.value.problems] == [3, 4, 5]
    assert len(read_jsonl(j, required=["video"], on_bad="skip")) == 2
    c = tmp_path / "a.csv"
    c.write_text("videoid,name\n1,a dog\n2\n3,\n4,\"multi\nline\"\n")
    with pytest.raises(AnnotationError) as ei:
        read_csv(c, required=["videoid", "name"])
    assert [r for r, _ in ei.value.problems] == [3, 4]
    ann = read_csv(c, required=["videoid", "name"], on_bad="skip")
    assert [r["name"] for r in ann] == ["a dog", "multi\nline"]
    with pytest.raises(AnnotationError, match="header lacks"):
        read_csv(c, required=["video"])
