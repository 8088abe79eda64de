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

Output folder (see ``docs/embed.md``)::

    OUT/embeddings.npy   float32 [M, D], one row per item
    OUT/index.jsonl      one line per row: row, video, video_index, item, start_s, end_s, frame_indices
                         (+ tokens, tokens_row with --tokens)
    OUT/tokens/CCCCCC.npy  [n, 1+N, C] per chunk (with --tokens)
    OUT/errors.jsonl     one line per unusable video: video, video_index, reason (MediaError code), detail
    OUT/videos.json      the input list, in processing order
    OUT/meta.json        model, settings, counts, timing
    OUT/progress.json    resume state

Resume: the video list is cut into chunks of ``chunk_size`` videos. A finished chunk is written as
``parts/CCCCCC.npy`` then committed by ``parts/CCCCCC.json`` (each through a temporary name and an atomic
rename); a run killed at any point and started again with the same settings skips the committed chunks.
Model batches are formed inside groups of ``batch_size`` consecutive videos of one chunk, never across
groups, so every batch (and every number) is the same whichever chunks ran before, however many
workers there are: a resumed run ends with the same arrays and index as an uninterrupted one. When every
chunk is committed the final files are assembled and ``parts/`` is removed.

Overlap: decoding, sampling and the transform run in DataLoader worker processes (an ``IterableDataset``
yielding one ready batch at a time) while the main process runs the model.

Modules: :mod:`.settings` (what decides the numbers), :mod:`.planning` (videos, items, groups),
:mod:`.stream` (the decoding workers), :mod:`.encoder` (the model side), :mod:`.storage` (the output folder:
lock, resume state, assembly, reading back), :mod:`.runner` (:func:`embed_videos`), :mod:`.cli`.
"""
from .cli import configure_parser, run
from .planning import find_videos, plan_items
from .runner import default_workers, embed_videos
from .settings import FEATURES, MODES, VIDEO_EXTENSIONS, EmbedSettings
from .storage import EmbedResult

__all__ = [
    "VIDEO_EXTENSIONS",
    "MODES",
    "FEATURES",
    "EmbedSettings",
    "EmbedResult",
    "find_videos",
    "plan_items",
    "embed_videos",
    "default_workers",
    "configure_parser",
    "run",
]
