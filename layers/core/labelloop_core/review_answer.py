"""A reviewer's answer, whichever backend collects it: the task UI's `crowd-bounding-box` element is
named `annotatedResult` (`ANSWER_ELEMENT`) in output.json and holds at most `MAX_BOXES` boxes
(Rekognition's limit per image).

A module of its own: the built-in backend's task code (`review_tasks`) needs these two constants, not
the A2I output parsing and consolidation of `labelloop_core.a2i`.
"""

ANSWER_ELEMENT = "annotatedResult"
MAX_BOXES = 50
