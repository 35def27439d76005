"""The studio's planner: a chat instruction in plain language becomes a new draft.

The studio stands in for NemoVideo's agent, which uses a language model to turn
"make it vertical with lo-fi music" into a timeline. The studio has no model, so
the planner does it by documented rules (docs/planner.md): a table of phrases,
a few number patterns, and negation. It is a pure function (no I/O, no
randomness) and never fails on what a user types; a prompt it does not
understand still gives a slideshow (first turn) or a description of the timeline.

Modules: :mod:`~studio.planner.reading` (prompt → wishes),
:mod:`~studio.planner.timing` (segment lengths), :mod:`~studio.planner.drafts`
(generate and edit), :mod:`~studio.planner.describe` (words),
:mod:`~studio.planner.planning` (the turn).
"""

from studio.planner.planning import plan
from studio.planner.plans import MediaItem, Plan, TurnKind

__all__ = ["MediaItem", "Plan", "TurnKind", "plan"]
