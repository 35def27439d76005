"""reelyard: turns photos and a prompt in plain language into finished videos.

The distribution holds one package per process role (see design.md): ``api``,
``workers``, ``models``, ``migrations``, ``nemo`` and ``studio``; this package
holds only what they share at the top: the version and the command line.
"""

__version__ = "0.1.0"
