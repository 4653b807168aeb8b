"""Every documented client example runs against the real stack.

A fenced block preceded by ``<!-- test: NAME -->`` in ``client/README.md`` or the project
``README.md`` is collected here: ``python`` blocks are executed, ``bash`` blocks run line by line
(``rtml`` / ``rtml-client`` from this virtualenv, each must exit 0). ``http://localhost:8080`` is
replaced by the test gateway's address; each block runs in a fresh directory holding ``iris.csv``
and ``models/`` (the test registry).
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT
from tests.stack_fixtures import RunningStack

DOCS = [REPO_ROOT / "client" / "README.md", REPO_ROOT / "README.md"]
BLOCK = re.compile(r"<!-- test: (?P<name>[\w-]+) -->\s*\n```(?P<lang>python|bash)\n(?P<code>.*?)\n```", re.S)
DOC_URL = "http://localhost:8080"
BIN = Path(sys.executable).parent


def documented_blocks() -> list[tuple[str, str, str]]:
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        for match in BLOCK.finditer(text):
            blocks.append((f"{path.relative_to(REPO_ROOT)}:{match['name']}", match["lang"], match["code"]))
    return blocks


BLOCKS = documented_blocks()


def test_the_client_readme_documents_every_feature() -> None:
    names = {name.split(":")[1] for name, _lang, _code in BLOCKS if name.startswith("client/")}
    assert {"sdk-quickstart", "sdk-async", "sdk-errors", "sdk-batch", "sdk-evaluate", "client-cli"} <= names


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: RunningStack) -> Path:
    with (tmp_path / "iris.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width"])
        writer.writerows([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]] * 20)
    (tmp_path / "models").symlink_to(stack.registry.root)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("name", "lang", "code"), BLOCKS, ids=[block[0] for block in BLOCKS])
def test_documented_example_runs(
    name: str, lang: str, code: str, stack: RunningStack, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = code.replace(DOC_URL, stack.base_url)
    if lang == "python":
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
        assert capsys.readouterr().out.strip(), f"{name} printed nothing"
        return
    env = {**os.environ, "RTML_URL": stack.base_url, "NO_COLOR": "1"}
    for line in code.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        argv[0] = str(BIN / argv[0])
        done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line!r} exited {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.strip(), f"{line!r} printed nothing"
