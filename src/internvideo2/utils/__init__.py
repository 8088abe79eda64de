"""Foundations shared by every layer: atomic files and JSON (:mod:`.io`), the seed-derivation rule
(:mod:`.seeding`), typed mappings -> dataclasses (:mod:`.typed`) and the machine description (:mod:`.env`).
Nothing here imports another part of the package except :mod:`internvideo2.errors`."""
