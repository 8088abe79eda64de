"""Feature extraction: ``internvideo2 embed VIDEOS... --model M -o OUT`` and :func:`embed_videos`.

One embedding per *item*; what an item is depends on the mode:

- ``clip``: one item per video, ``--frames N`` frames sampled with the official ``middle`` policy over
  the whole video (the stage-2 / CLIP test sampler);
- ``window``: sliding windows of ``--window`` seconds every ``--stride`` seconds
  (:func:`~internvideo2.data.video.sliding_windows`; the last window is aligned to the end), ``middle``
  sampling inside each window's frames (:func:`~internvideo2.data.video.frame_range`);
- ``shots``: one item per shot of :func:`~internvideo2.data.segment.detect_shots`, ``middle`` sampling
  inside the shot.

Features (``feature``) are fields of the model's :class:`~internvideo2.models.api.VideoEmbedding`:
``auto`` is ``proj`` for models with a text side (stage 2, CLIP) and ``pool`` otherwise. ``pool`` is
``.pooled``, the attention-pool output of the vision core ``[clip_embed_dim]`` (not normalised); ``proj`` is
``.embeds``, the model's L2-normalised video feature in its shared video-text space (stage 2:
``normalize(vision_proj(pooled))`` ``[embed_dim]``; CLIP: ``normalize(vision_align(pooled))``), the one its
text embeddings are compared with; ``mean`` is the mean of ``.tokens`` (the only choice for a core without
attention pool). ``normalize`` L2-normalises
the rows whatever the feature. ``tokens`` also keeps the final tokens ``[1+N, C]`` of every item.

Frames go through the model's evaluation transform (``resize='squash'``: bicubic squash to the model's
size, as ``encode_video`` does; ``'center_crop'``: short side + central crop; ``'decoder'``: the decoder
resizes straight to the model size, faster on large videos, pixels differ slightly from ``squash``).

Output folder (see ``docs/embed.md``; read it back with :func:`load`)::

    OUT/embeddings.npy   float32 [M, D], one row per item
    OUT/index.jsonl      one line per row: row, video (relative to its input root), root (index into
                         meta["inputs"]["roots"]), video_index, item, start_s, end_s, frame_indices
                         (+ tokens, tokens_row with --tokens)
    OUT/tokens/CCCCCC.npy  [n, 1+N, C] per chunk (with --tokens)
    OUT/errors.jsonl     one line per unusable video or path: video, root, video_index, reason (MediaError
                         code), detail, retry (whether the next run tries it again)
    OUT/videos.json      the state of every input (identity on disk, status, its rows)
    OUT/meta.json        model, settings, input roots, counts, timing
    OUT/progress.json    the settings fingerprint and the plan of the run in progress

Resume and updates: the videos to embed are cut into chunks of ``chunk_size`` videos. A finished chunk is
written as ``parts/CCCCCC.npy`` then committed by ``parts/CCCCCC.json`` (each through a temporary name and an
atomic rename); a run killed at any point and started again with the same inputs and settings keeps its plan
and skips the committed chunks. Model batches are formed inside groups of ``batch_size`` consecutive videos of
one chunk, never across groups, so every batch (and every number) is the same whichever chunks ran before,
however many workers there are: a resumed run ends with the same arrays and index as an uninterrupted one.
A later run on an output of the same model and settings updates it: new videos and videos changed on disk
(size, mtime) are embedded in new chunks, removed ones are dropped, failures that can change (timeouts,
memory, I/O, unexpected errors) are tried again, the rest is kept; ``retry_bad`` (``--retry-bad``) retries
every failure. Other settings or another model are refused (``--overwrite`` starts over).

Overlap: decoding, sampling and the transform run in DataLoader worker processes (an ``IterableDataset``
yielding one ready batch at a time) while the main process runs the model.

Modules: :mod:`.settings` (what decides the numbers), :mod:`.planning` (videos, items, groups),
:mod:`.stream` (the decoding workers), :mod:`.encoder` (the model side), :mod:`.storage` (the output folder:
lock, resume state, assembly, reading back), :mod:`.runner` (:func:`embed_videos`), :mod:`.cli`.
"""
from .cli import configure_parser, run
from .planning import Scan, VideoRef, find_videos, plan_items, scan_inputs
from .runner import default_workers, embed_videos
from .settings import FEATURES, MODES, VIDEO_EXTENSIONS, EmbedSettings
from .storage import EmbedResult, load

__all__ = [
    "VIDEO_EXTENSIONS",
    "MODES",
    "FEATURES",
    "EmbedSettings",
    "EmbedResult",
    "load",
    "Scan",
    "VideoRef",
    "scan_inputs",
    "find_videos",
    "plan_items",
    "embed_videos",
    "default_workers",
    "configure_parser",
    "run",
]
