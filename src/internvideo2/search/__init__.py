"""Video search: index a folder of videos (``internvideo2 index``), search it by text (``internvideo2 search``,
:class:`Index`), browse it in a web page (``internvideo2 serve``).

Modules: :mod:`.store` (the SQLite store of an index folder), :mod:`.index` (:class:`Index`: query embedding,
exact search), :mod:`.build` (building and updating an index through the ``embed`` pipeline), :mod:`.ann`
(approximate search above a size threshold), :mod:`.server` (the web application), :mod:`.cli`.
"""
from .index import Hit, Index, model_identity
from .store import IndexStore, Item

__all__ = ["Hit", "Index", "IndexStore", "Item", "model_identity"]
