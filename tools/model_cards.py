"""Write the model card of every manifest model to ``docs/model-cards/<name>.md``.

    python tools/model_cards.py            # regenerate
    python tools/model_cards.py --check    # exit 1 if a card is out of date

The cards are the ``README.md`` that ``mirzoo publish`` puts in each model's Hugging Face repo
(:func:`mirzoo.publish.model_card`), built from the manifest entry: architecture, layers, tag
vocabularies, training data, training time and hardware, the reproducing command and every
recorded metric.  ``tests/test_publish.py`` fails when a committed card differs from what the
manifest gives, so the cards follow each retraining and each ``benchmarks/... --record``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "docs" / "model-cards"


def cards() -> dict[str, str]:
    from mirzoo.publish import model_card
    from mirzoo.zoo.manifest import get_spec, list_models

    out = {}
    for name in list_models():
        spec = get_spec(name)
        out[name] = model_card(spec, spec.hub_repo_id or f"mirzoo/{name}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a card is out of date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from mirzoo.fileio import atomic_file

    stale = []
    for name, text in cards().items():
        path = CARDS / f"{name}.md"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            with atomic_file(path) as tmp:
                Path(tmp).write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run python tools/model_cards.py)")
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "all cards up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
