"""The studio: reelyard's own Nemo-compatible backend.

It speaks NemoVideo's agent API (nemo-api.md) and really renders the video, so the
product works offline and every test runs against something real. It shares no
code with the service: it stands for the remote side. ``studio.render`` turns a
draft and its media into an MP4.
"""
