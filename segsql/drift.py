"""`segsql compile --check`: is the committed compiled SQL what the definitions produce now?

The would-be output is compared with the files on disk, without writing anything, so CI can fail
when someone edited a definition but did not recompile (or edited compiled SQL by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segsql.emit import manifest_text


@dataclass(frozen=True)
class Drift:
    path: Path
    state: str  # "changed", "missing" (would be created) or "stale" (would be removed)


def compiled_drift(
    out_dir: Path,
    per_target: dict[str, dict[str, str]],
    manifest_data: dict[str, Any],
    replace: bool,
) -> list[Drift]:
    """Every file that `compile` would create, change or (with `replace`) remove."""
    expected: dict[Path, str] = {
        out_dir / "compiled" / target / rel: text
        for target, files in per_target.items()
        for rel, text in files.items()
    }
    expected[out_dir / "manifest.json"] = manifest_text(manifest_data)
    drift = [_compare(path, text) for path, text in sorted(expected.items())]
    found = [d for d in drift if d is not None]
    if replace:
        for target in per_target:
            folder = out_dir / "compiled" / target
            on_disk = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            found += [
                Drift(p, "stale")
                for p in on_disk
                if p not in expected and not p.name.startswith(".")
            ]
    return found


def _compare(path: Path, text: str) -> Drift | None:
    if not path.is_file():
        return Drift(path, "missing")
    current = path.read_text(encoding="utf-8")
    return None if current == text else Drift(path, "changed")
