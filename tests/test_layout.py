"""The wings import one way: nn (the LSTM) <- forecast <- cli and nn <- studies <- cli; nothing
imports cli, and studies (papers redone in small) import nn only: not forecast, not cli.

Read from the source with `ast`, so a lazy import inside a function counts as much as a top-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import subprocess_env

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lstmbyhand"


def imported_modules(path: Path) -> set[str]:
    """Every lstmbyhand module a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "lstmbyhand"}


def wing(module_or_path: str) -> str:
    """'nn', 'forecast', 'studies', 'cli' or 'top' (the package root: seed, errors)."""
    parts = module_or_path.split(".")
    return (
        parts[1] if len(parts) >= 2 and parts[1] in ("nn", "forecast", "studies", "cli") else "top"
    )


ALLOWED = {  # wing -> wings it may import
    "nn": {"nn"},
    "top": {"top", "nn"},
    "forecast": {"top", "nn", "forecast"},
    "studies": {"nn", "studies"},
    "cli": {"top", "nn", "forecast", "studies", "cli"},
}


def test_imports_go_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("lstmbyhand", *path.relative_to(PACKAGE).with_suffix("").parts))
        if module == "lstmbyhand.__main__":  # the entry point: `python -m lstmbyhand` runs the CLI
            continue
        here = wing(module)
        for name in imported_modules(path):
            if name in ("lstmbyhand", "lstmbyhand.__version__"):
                continue
            if wing(name) not in ALLOWED[here]:
                bad.append(f"{module} ({here}) imports {name} ({wing(name)})")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_wrong_import(tmp_path):
    """The checker itself: a forecast import in nn is found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from lstmbyhand.forecast import data\n")
    names = imported_modules(sample)
    assert "lstmbyhand.forecast.data" in names
    assert wing("lstmbyhand.forecast.data") not in ALLOWED["nn"]
    assert wing("lstmbyhand.studies.odyssey") == "studies"
    for other in ("lstmbyhand.forecast.data", "lstmbyhand.cli.odyssey", "lstmbyhand.errors"):
        assert wing(other) not in ALLOWED["studies"], other
    assert not any("studies" in ALLOWED[w] for w in ("nn", "top", "forecast"))


def test_the_parser_and_the_config_import_no_torch():
    code = (
        "import sys; import lstmbyhand.cli as c; c.build_parser(); "
        "import lstmbyhand.forecast.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'numpy')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
