"""Real, unlabelled music from six Debian game packages, cut into clips with provenance and licence.

    python -m training.real build --out /work/data/real     # resumable, deterministic
    python -m training.real stats /work/data/real           # hours per split / package / licence

Sources: the music of ``ufoai-music``, ``supertuxkart-data``, ``hedgewars-data``,
``megaglest-data``, ``freedroidrpg-data`` and ``supertux-data`` (``apt-get install`` them first).
Every other recording on the machine is reserved for evaluation and is never read: the builder
only opens files that dpkg lists for these six packages.

Which files are music (the rule, decided by path, then by duration):

* an audio file (``.ogg .oga .mp3 .flac .wav .opus``) that dpkg lists for one of the packages, or
  a member of a ``.pk3``/``.zip`` archive that dpkg lists (ufoai ships its music in ``0music.pk3``);
* whose path has a directory named ``music`` (any case) -- this keeps ``data/music/``,
  ``Data/Music/``, ``factions/*/music/``, ``core/menu/music/`` and ``sound/music/`` and leaves out
  every ``sfx/``, ``sounds/``, ``voices/``, ``speech/`` and ``effects/`` file.  It also leaves out the
  handful of long files outside a ``music`` folder (supertuxkart ``tracks/*/*.ogg``, freedroidrpg
  ``titles/*.ogg``): some are music, some are speech or engine loops, and the rule stays a path rule;
* at least one clip long (``--clip-seconds``, default 10 s): shorter jingles are skipped and counted.

Tracker modules (``.xm .mod .it .s3m``) are listed by the rule but none of the six packages ships one
in a music folder (checked on Debian 12); any that appears is skipped and counted as
``tracker-module`` rather than rendered.  Files whose bytes equal an earlier file's (sha256) are
skipped as ``duplicate``.

Clips: consecutive ``--clip-seconds`` windows from the start of each track (offsets 0, 10, 20, ...;
the tail shorter than a clip is dropped), decoded with :func:`mirzoo.audio.load_audio` to mono at
``--sr`` (16 kHz), written as 16-bit FLAC without any gain change.  Clips quieter than
``--silence-db`` (RMS, dBFS; default -60) are skipped and counted.

Splits are by *track group*, never by clip: ``sha256(package + "/" + group)`` mapped to [0, 1)
against ``--split-fractions`` (default 0.7/0.1/0.2; the test split feeds
``benchmarks/real_audio.py``).  The group is the file name, lower-cased, without the variant
suffixes the packages use for one piece (``_fast``, ``_f``, ``_old``, ``_sd``, ``_remix``,
``_remake``, ``_loop``) and without a trailing number, so ``celtic`` and ``celtic_fast``, or
``Crystan-Battlescape01`` .. ``06``, never straddle two splits.

Licences come from ``/usr/share/doc/<package>/copyright`` (DEP-5): the *last* ``Files:`` stanza
whose pattern matches a tail of the installed path (DEP-5 patterns are relative to the source tree,
installed paths are not) gives the licence, its wildcards kept inside one directory level.  Failing
that, a looser match (``*`` spanning directories, or leading directories of the pattern dropped),
and failing that the catch-all ``Files: *``, are recorded with ``licence_ambiguous`` set: the
catch-all usually describes code, and the package's music may not be covered by it.  ``commercial`` says whether the licence text named
allows commercial use of the recordings (``yes`` for GPL/CC-BY/CC-BY-SA/CC0/public domain and other
free licences, with their attribution or share-alike conditions; ``no`` for -NC licences;
``unknown`` otherwise).  Whether trained weights are a derivative of the recordings is a legal
question this tool does not answer.

Outputs (atomic writes; re-running skips the tracks already done, keyed by source sha256):

* ``audio/<split>/<package>/<track>-<offset>.flac``
* ``tracks/<package>--<track>.json``: the record of one finished track (its clips, licence, ...)
* ``metadata.csv``: one row per clip, sorted -- ``path, split, package, version, source,
  track, group, offset_s, duration_s, sr, licence, licence_files, licence_ambiguous, commercial,
  source_sha256, sha256`` (``sha256`` of the FLAC file)
* ``skipped.csv`` (file, reason) and ``stats.json``.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

PACKAGES = (
    "ufoai-music",
    "supertuxkart-data",
    "hedgewars-data",
    "megaglest-data",
    "freedroidrpg-data",
    "supertux-data",
)
AUDIO_EXTS = (".ogg", ".oga", ".mp3", ".flac", ".wav", ".opus")
TRACKER_EXTS = (".xm", ".mod", ".it", ".s3m")
ARCHIVE_EXTS = (".pk3", ".zip")
SPLITS = ("train", "valid", "test")
VARIANT_SUFFIX = re.compile(r"[_-](fast|f|old|sd|remix|remake|loop)$")
TRAILING_NUMBER = re.compile(r"[_-]?\d+$")
FIELDS = ("path", "split", "package", "version", "source", "track", "group", "offset_s", "duration_s", "sr",
          "licence", "licence_files", "licence_ambiguous", "commercial", "source_sha256", "sha256")


class RealDataError(ValueError):
    """Bad input to the real-audio builder (a package not installed, bad fractions, ...)."""


# ---------------------------------------------------------------------------------------------- dpkg


def package_version(pkg: str, root: Path = Path("/")) -> str:
    """The installed version of ``pkg`` from ``<root>/var/lib/dpkg/status``."""
    status = root / "var/lib/dpkg/status"
    if not status.exists():
        raise RealDataError(f"no dpkg status file at '{status}'")
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(_fields(stanza))
        if fields.get("package") == pkg and fields.get("status", "installed").split()[-1] == "installed":
            return fields.get("version", "")
    raise RealDataError(f"package {pkg!r} is not installed (not in '{status}'): apt-get install {pkg}")


def package_files(pkg: str, root: Path = Path("/")) -> list[str]:
    """Absolute paths (as dpkg records them) of the files of ``pkg``, sorted."""
    info = root / "var/lib/dpkg/info"
    lists = [info / f"{pkg}.list"] + sorted(info.glob(f"{pkg}:*.list"))
    for lst in lists:
        if lst.exists():
            return sorted(l for l in lst.read_text(encoding="utf-8").splitlines() if l and l != "/.")
    raise RealDataError(f"no dpkg file list for {pkg!r} under '{info}': apt-get install {pkg}")


def _fields(stanza: str) -> Iterator[tuple[str, str]]:
    """``(lower-cased field, value)`` pairs of one RFC-822 style stanza; continuation lines joined by newlines."""
    key, value = None, []
    for line in stanza.splitlines():
        if line.startswith((" ", "\t")) and key is not None:
            value.append(line.strip())
        elif ":" in line and not line.startswith("#"):
            if key is not None:
                yield key, "\n".join(value).strip()
            k, v = line.split(":", 1)
            key, value = k.strip().lower(), [v.strip()]
    if key is not None:
        yield key, "\n".join(value).strip()


# ------------------------------------------------------------------------------------------ licences


@dataclass(frozen=True)
class Licence:
    licence: str  # the DEP-5 License: short name, e.g. "CC-BY-SA-3.0" or "GPL-2+ or CC-BY-SA-3.0"
    files: str  # the Files: pattern that matched ("" if none)
    ambiguous: bool
    note: str = ""

    @property
    def commercial(self) -> str:
        return commercial_use(self.licence)


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """The ``(Files patterns, License short name)`` of every ``Files:`` stanza of a DEP-5 file, in order.

    Raises :class:`RealDataError` if the text is not machine-readable (no ``Format:`` header).
    """
    stanzas = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    header = dict(_fields(stanzas[0])) if stanzas else {}
    if "format" not in header:
        raise RealDataError("copyright file is not in the DEP-5 machine-readable format (no 'Format:' header)")
    out = []
    for stanza in stanzas[1:]:
        fields = dict(_fields(stanza))
        if "files" in fields:
            lic = fields.get("license", "").split("\n", 1)[0].strip()
            out.append((fields["files"].split(), lic))
    return out


def _tails(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def _strict_regex(pattern: str) -> "re.Pattern[str]":
    """A DEP-5 pattern whose ``*`` and ``?`` stay inside one path component."""
    return re.compile("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def pattern_match(pattern: str, path: str) -> str:
    """How a DEP-5 ``Files:`` pattern matches installed ``path``: ``"strict"``, ``"loose"`` or ``""``.

    DEP-5 patterns name paths in the *source* tree; installed paths keep only a tail of them.
    ``strict``: the pattern matches a tail of ``path`` with its wildcards inside one directory
    level.  ``loose``: it matches only with ``*`` spanning directories (legal DEP-5, but
    ``hedgewars/*`` then also covers ``.../hedgewars/Data/Music/x.ogg``) or after dropping leading
    directories of the pattern that the install renamed (``data/music/*`` against
    ``.../supertux2/music/forest/x.ogg``).
    """
    pattern = pattern.strip("/")
    tails = _tails(path)
    rx = _strict_regex(pattern)
    if any(rx.match(t) for t in tails):
        return "strict"
    p_parts = pattern.split("/")
    for k in range(len(p_parts) - 1):  # keep at least one directory of the pattern
        sub = "/".join(p_parts[k:])
        if any(fnmatch.fnmatchcase(t, sub) for t in tails):
            return "loose"
    return ""


def licence_for(stanzas: Sequence[tuple[list[str], str]], path: str) -> Licence:
    """The licence of installed ``path``.

    The last stanza with a strict match wins (the DEP-5 rule: later stanzas override earlier
    ones); without one, the last loose match, flagged ambiguous; without one, the catch-all
    ``Files: *``, flagged ambiguous.
    """
    strict = loose = catch_all = None
    for patterns, lic in stanzas:
        for p in patterns:
            if p == "*":
                catch_all = (p, lic)
                continue
            how = pattern_match(p, path)
            if how == "strict":
                strict = (p, lic)
            elif how == "loose":
                loose = (p, lic)
    if strict is not None:
        return Licence(strict[1], strict[0], False)
    if loose is not None:
        return Licence(loose[1], loose[0], True, f"only a loose match: pattern {loose[0]!r} against the installed path")
    if catch_all is not None:
        return Licence(catch_all[1], "*", True, "only the catch-all 'Files: *' stanza matches")
    return Licence("unknown", "", True, "no Files: stanza matches")


_FREE = re.compile(r"^(L?GPL|AGPL|GFDL|CC-BY(-SA)?-|CC0|public-domain|MIT|Expat|BSD|zlib|Apache|OFL|Artistic|"
                   r"ISC|WTFPL|BSL|X11|Boost|FAL|Unlicense)", re.I)


def commercial_use(licence: str) -> str:
    """``yes``/``no``/``unknown``: does the named licence let the recordings be used commercially?"""
    if not licence or licence == "unknown":
        return "unknown"
    alternatives = [a.strip() for a in re.split(r"\s+or\s+|\s*\|\s*", licence)]
    verdicts = []
    for alt in alternatives:
        parts = [p.strip() for p in re.split(r"\s+and\s+|\s*,\s*", alt)]
        if any("NC" in p.upper().split("-") for p in parts):
            verdicts.append("no")
        elif all(_FREE.match(p) for p in parts):
            verdicts.append("yes")
        else:
            verdicts.append("unknown")
    return "yes" if "yes" in verdicts else ("unknown" if "unknown" in verdicts else "no")


# --------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Source:
    package: str
    path: str  # the installed path, or "<archive>:<member>" for archive members
    logical: str  # the path used for the music rule and the licence (archive dir + member)

    @property
    def track(self) -> str:
        return Path(self.logical).stem


def is_music_path(path: str) -> bool:
    """The path rule: a directory named ``music`` (any case) somewhere above the file."""
    return any(part.lower() == "music" for part in path.strip("/").split("/")[:-1])


def track_group(name: str) -> str:
    """The split key of a track name: lower case, variant suffixes and a trailing number removed."""
    g = name.lower()
    while True:
        h = TRAILING_NUMBER.sub("", VARIANT_SUFFIX.sub("", g))
        if h == g or not h:
            return g
        g = h


def split_of(package: str, group: str, fractions: Sequence[float]) -> str:
    u = int.from_bytes(hashlib.sha256(f"{package}/{group}".encode()).digest()[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def list_sources(pkg: str, root: Path) -> tuple[list[Source], list[tuple[str, str]]]:
    """Music files of ``pkg`` by the path rule, and ``(path, reason)`` of candidates left out."""
    sources, skipped = [], []
    for path in package_files(pkg, root):
        ext = os.path.splitext(path)[1].lower()
        if ext in ARCHIVE_EXTS and (root / path.lstrip("/")).is_file():
            with zipfile.ZipFile(root / path.lstrip("/")) as z:
                for member in sorted(z.namelist()):
                    logical = f"{os.path.dirname(path)}/{member}"
                    mext = os.path.splitext(member)[1].lower()
                    if member.endswith("/") or not is_music_path(logical):
                        continue
                    if mext in AUDIO_EXTS:
                        sources.append(Source(pkg, f"{path}:{member}", logical))
                    elif mext in TRACKER_EXTS:
                        skipped.append((f"{path}:{member}", "tracker-module"))
        elif is_music_path(path):
            if ext in AUDIO_EXTS:
                sources.append(Source(pkg, path, path))
            elif ext in TRACKER_EXTS:
                skipped.append((path, "tracker-module"))
    return sources, skipped


def read_source(src: Source, root: Path) -> bytes:
    if ":" in src.path and os.path.splitext(src.path.split(":", 1)[0])[1].lower() in ARCHIVE_EXTS:
        archive, member = src.path.split(":", 1)
        with zipfile.ZipFile(root / archive.lstrip("/")) as z:
            return z.read(member)
    return (root / src.path.lstrip("/")).read_bytes()


# ------------------------------------------------------------------------------------------ building


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "track"


def decode(data: bytes, suffix: str, sr: int) -> np.ndarray:
    """Mono float32 samples at ``sr`` of an encoded file given as bytes."""
    from mirzoo.audio import load_audio

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"src{suffix}"
        p.write_bytes(data)
        return load_audio(p, sr)


def encode_flac(y: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _track_record_path(out: Path, src: Source) -> Path:
    return out / "tracks" / f"{src.package}--{_slug(src.track)}.json"


def build_track(src: Source, data: bytes, out: Path, *, version: str, licence: Licence, split: str,
                group: str, sr: int, clip_seconds: float, silence_db: float) -> dict:
    y = decode(data, os.path.splitext(src.logical)[1].lower(), sr)
    n = int(round(clip_seconds * sr))
    clips, silent = [], 0
    for k in range(len(y) // n):
        seg = y[k * n : (k + 1) * n]
        rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
        if 20 * np.log10(max(rms, 1e-12)) < silence_db:
            silent += 1
            continue
        offset = k * clip_seconds
        rel = Path("audio") / split / src.package / f"{_slug(src.track)}-{int(round(offset)):05d}.flac"
        flac = encode_flac(seg, sr)
        _atomic_write(out / rel, flac)
        clips.append({"path": rel.as_posix(), "offset_s": float(offset), "duration_s": float(clip_seconds),
                      "sha256": hashlib.sha256(flac).hexdigest()})
    return {
        "package": src.package, "version": version, "source": src.path, "track": src.track, "group": group,
        "split": split, "sr": sr, "source_seconds": round(len(y) / sr, 3), "silent_clips": silent,
        "licence": licence.licence, "licence_files": licence.files, "licence_ambiguous": licence.ambiguous,
        "licence_note": licence.note, "commercial": licence.commercial,
        "source_sha256": hashlib.sha256(data).hexdigest(), "clips": clips,
        "settings": {"sr": sr, "clip_seconds": clip_seconds, "silence_db": silence_db},
    }


def build(out: Path, *, root: Path = Path("/"), packages: Iterable[str] = PACKAGES, sr: int = 16000,
          clip_seconds: float = 10.0, fractions: Sequence[float] = (0.7, 0.1, 0.2), silence_db: float = -60.0,
          progress: bool = False) -> dict:
    """Build (or resume) the real-audio clip set under ``out``; returns the stats written to ``stats.json``."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise RealDataError(f"split fractions={fractions} must be three non-negative numbers summing to 1")
    if not isinstance(sr, int) or sr <= 0:
        raise RealDataError(f"sr={sr!r} must be a positive integer")
    if not clip_seconds > 0:
        raise RealDataError(f"clip_seconds={clip_seconds!r} must be > 0")
    packages = list(packages)
    unknown = [p for p in packages if p not in PACKAGES]
    if unknown:
        raise RealDataError(f"packages {unknown} are not allowed sources; allowed: {PACKAGES}")
    out.mkdir(parents=True, exist_ok=True)
    settings = {"sr": sr, "clip_seconds": clip_seconds, "silence_db": silence_db}
    work: list[tuple[Source, str, Licence]] = []
    skipped: list[tuple[str, str]] = []
    for pkg in packages:
        version = package_version(pkg, root)
        copyright_file = root / "usr/share/doc" / pkg / "copyright"
        try:
            stanzas = parse_copyright(copyright_file.read_text(encoding="utf-8", errors="replace"))
        except (OSError, RealDataError) as e:
            log.warning("%s: %s", copyright_file, e)
            stanzas = []
        sources, skip = list_sources(pkg, root)
        skipped += skip
        for src in sources:
            lic = licence_for(stanzas, src.logical) if stanzas else Licence(
                "unknown", "", True, f"'{copyright_file}' unreadable or not DEP-5")
            work.append((src, version, lic))

    records, seen, silent = [], {}, 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), unit="track")
    for src, version, lic in work:
        data = read_source(src, root)
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped.append((src.path, f"duplicate of {seen[digest]}"))
        else:
            seen[digest] = src.path
            rec_path = _track_record_path(out, src)
            rec = json.loads(rec_path.read_text(encoding="utf-8")) if rec_path.exists() else None
            done = (rec is not None and rec["source_sha256"] == digest and rec["settings"] == settings
                    and rec["source"] == src.path and all((out / c["path"]).exists() for c in rec["clips"]))
            group = track_group(src.track)
            split = split_of(src.package, group, fractions)
            lic_fields = {"licence": lic.licence, "licence_files": lic.files, "licence_ambiguous": lic.ambiguous,
                          "licence_note": lic.note, "commercial": lic.commercial, "version": version}
            if done and rec["split"] == split:
                if any(rec.get(k) != v for k, v in lic_fields.items()):  # copyright file or rule changed
                    rec.update(lic_fields)
                    _atomic_write(rec_path, json.dumps(rec, indent=1, sort_keys=True).encode())
            else:
                rec = build_track(src, data, out, version=version, licence=lic, split=split, group=group,
                                  sr=sr, clip_seconds=clip_seconds, silence_db=silence_db)
                _atomic_write(rec_path, json.dumps(rec, indent=1, sort_keys=True).encode())
            silent += rec["silent_clips"]
            if rec["clips"]:
                records.append(rec)
            else:
                skipped.append((src.path, f"shorter than one clip ({rec['source_seconds']} s) or silent"))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _write_outputs(out, records, skipped, silent, clip_seconds, fractions)


def _write_outputs(out: Path, records: list[dict], skipped: list[tuple[str, str]], silent: int,
                   clip_seconds: float, fractions: Sequence[float]) -> dict:
    rows = []
    for rec in records:
        for c in rec["clips"]:
            rows.append({"path": c["path"], "split": rec["split"], "package": rec["package"],
                         "version": rec["version"], "source": rec["source"], "track": rec["track"],
                         "group": rec["group"], "offset_s": f"{c['offset_s']:g}", "duration_s": f"{c['duration_s']:g}",
                         "sr": rec["sr"], "licence": rec["licence"], "licence_files": rec["licence_files"],
                         "licence_ambiguous": int(rec["licence_ambiguous"]), "commercial": rec["commercial"],
                         "source_sha256": rec["source_sha256"], "sha256": c["sha256"]})
    rows.sort(key=lambda r: r["path"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _atomic_write(out / "metadata.csv", buf.getvalue().encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "reason"])
    w.writerows(sorted(skipped))
    _atomic_write(out / "skipped.csv", buf.getvalue().encode())
    stats = summarise(rows, records, skipped, silent, clip_seconds, fractions)
    _atomic_write(out / "stats.json", json.dumps(stats, indent=1, sort_keys=True).encode())
    return stats


def summarise(rows: list[dict], records: list[dict], skipped: list[tuple[str, str]], silent: int,
              clip_seconds: float, fractions: Sequence[float]) -> dict:
    def hours(select) -> float:
        return round(sum(float(r["duration_s"]) for r in rows if select(r)) / 3600, 3)

    packages = sorted({r["package"] for r in rows})
    licences = sorted({r["licence"] for r in rows})
    reasons: dict[str, int] = {}
    for _, why in skipped:
        key = "duplicate" if why.startswith("duplicate") else why.split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "clips": len(rows), "tracks": len(records), "hours": hours(lambda r: True), "clip_seconds": clip_seconds,
        "split_fractions": list(fractions),
        "per_split": {s: {"clips": sum(r["split"] == s for r in rows), "hours": hours(lambda r, s=s: r["split"] == s),
                          "tracks": sum(rec["split"] == s for rec in records)} for s in SPLITS},
        "per_package": {p: {"version": next(r["version"] for r in rows if r["package"] == p),
                            "tracks": sum(rec["package"] == p for rec in records),
                            **{s: hours(lambda r, p=p, s=s: r["package"] == p and r["split"] == s) for s in SPLITS},
                            "hours": hours(lambda r, p=p: r["package"] == p)} for p in packages},
        "per_licence": {l: {"hours": hours(lambda r, l=l: r["licence"] == l),
                            "tracks": sum(rec["licence"] == l for rec in records),
                            "commercial": commercial_use(l),
                            "ambiguous_tracks": sum(rec["licence"] == l and rec["licence_ambiguous"] for rec in records)}
                        for l in licences},
        "hours_commercial_ok": hours(lambda r: r["commercial"] == "yes"),
        "silent_clips_skipped": silent,
        "skipped_files": reasons,
    }


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.real", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build or resume the clip set")
    b.add_argument("--out", required=True, help="output folder (keep it outside git, e.g. /work/data/real)")
    b.add_argument("--root", default="/", help="file-system root holding dpkg's database (tests use a fake one)")
    b.add_argument("--packages", nargs="+", default=list(PACKAGES), choices=PACKAGES)
    b.add_argument("--sr", type=int, default=16000)
    b.add_argument("--clip-seconds", type=float, default=10.0)
    b.add_argument("--split-fractions", type=float, nargs=3, default=[0.7, 0.1, 0.2])
    b.add_argument("--silence-db", type=float, default=-60.0)
    s = sub.add_parser("stats", help="print stats.json of a built folder")
    s.add_argument("folder")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            stats = build(Path(args.out), root=Path(args.root), packages=args.packages, sr=args.sr,
                          clip_seconds=args.clip_seconds, fractions=args.split_fractions,
                          silence_db=args.silence_db, progress=True)
        except RealDataError as e:
            parser.exit(2, f"error: {e}\n")
    else:
        stats = json.loads((Path(args.folder) / "stats.json").read_text(encoding="utf-8"))
    print(json.dumps(stats, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
