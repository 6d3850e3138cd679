"""Every file a docstring, comment or doc points to is in the repository: a reader of a clone
can follow each reference. Checked: repository paths (`docs/...`, `udass/...`, `tests/...`,
`benchmarks/...`, `notebooks/...`) and every `*.md` name, in the code, tests, benchmarks,
notebooks and docs."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATH_REF = re.compile(r"(?<![\w/.<{-])((?:docs|udass|tests|benchmarks|notebooks)/[\w./-]*\w\.(?:md|py|ipynb|csv))\b")
MD_REF = re.compile(r"(?<![\w/.<{-])([\w-]+\.md)\b")
# file names that name a produced file or a placeholder, not a file of this repository
NOT_REFERENCES = {"table.md", "tsne_metrics.md"}
PLACEHOLDER = re.compile(r"(?:^|[/_])[A-Z]+\.")  # notebooks/NAME.ipynb, benchmarks/bench_X.py


def _texts() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "udass", "tests",
                          "benchmarks", "docs", "notebooks", "README.md", "Makefile"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / p for p in out if p.endswith((".py", ".md", ".ipynb", "Makefile"))
            and (REPO / p).is_file()]


def broken_references(text: str, where: Path) -> list[str]:
    """The references in `text` (a file at `where`) to files that do not exist."""
    bad = []
    for ref in PATH_REF.findall(text):
        if not PLACEHOLDER.search(ref) and not (REPO / ref).exists():
            bad.append(ref)
    for name in MD_REF.findall(text):
        if name in NOT_REFERENCES or "/" in name:
            continue
        if not ((REPO / name).exists() or (REPO / "docs" / name).exists() or (where.parent / name).exists()):
            bad.append(name)
    return bad


def test_every_reference_points_to_a_file_of_the_repository():
    broken = {}
    for path in _texts():
        if path == Path(__file__).resolve():
            continue
        text = re.sub(r"https?://\S+", "", path.read_text(encoding="utf-8", errors="replace"))
        bad = broken_references(text, path)
        if bad:
            broken[str(path.relative_to(REPO))] = sorted(set(bad))
    assert not broken, f"references to files that are not in the repository: {broken}"


def test_the_checker_finds_a_missing_file():
    here = REPO / "udass" / "config.py"
    assert broken_references("see METHOD.md section 5 and docs/nowhere.md", here) == \
        ["docs/nowhere.md", "METHOD.md"]
    assert broken_references("see docs/method.md, section 5, and README.md", here) == []
