"""Publish a trained model to the Hugging Face Hub: ``python -m training.publish``.

The ``mirzoo publish`` command (:func:`mirzoo.cli.publish_main`) under its own name, so that
the training workflow ends with one command from the repository root::

    python -m training.publish runs/crnn-tagging/best/ --repo mirzoo/crnn-tagging            # dry run
    python -m training.publish runs/crnn-tagging/best/ --repo mirzoo/crnn-tagging --push \\
        --tag v1 --update-manifest                                                         # upload, re-pin

``--update-manifest`` writes the new commit into both copies of the manifest
(``weights_manifest.json`` and ``mirzoo/weights_manifest.json``).
"""

from __future__ import annotations

from typing import Optional, Sequence

from mirzoo.cli import publish_main

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    return publish_main(argv, prog="python -m training.publish")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
