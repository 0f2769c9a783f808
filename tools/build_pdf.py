"""Build the handbook's PDF: Sphinx's LaTeX builder, then xelatex through latexmk.

    python tools/build_pdf.py

Writes ``_build/handbook.pdf``. The HTML build (``tox -e docs``) publishes that file at the
site root and links it from every page. Stops with the packages to install when the TeX
tools are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
PACKAGES = (
    "texlive-xetex texlive-latex-recommended texlive-fonts-recommended latexmk "
    "fonts-freefont-otf fonts-dejavu-core make"
)


def missing_tools() -> list[str]:
    return [tool for tool in ("latexmk", "xelatex", "make") if shutil.which(tool) is None]


def main() -> int:
    missing = missing_tools()
    if missing:
        print(
            f"Cannot build the PDF: {', '.join(missing)} not found.\n"
            f"On Debian or Ubuntu: sudo apt-get install --no-install-recommends {PACKAGES}",
            file=sys.stderr,
        )
        return 2
    cmd = [
        sys.executable, "-m", "sphinx", "-M", "latexpdf", "docs", str(BUILD), "-c", ".",
        "-n", "-W", "--keep-going", "-q",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env={**__import__("os").environ, "LATEXMKOPTS": "-quiet -halt-on-error"})
    if result.returncode:
        print(f"PDF build failed; see {BUILD / 'latex' / 'handbook.log'}", file=sys.stderr)
        return result.returncode
    shutil.copyfile(BUILD / "latex" / "handbook.pdf", BUILD / "handbook.pdf")
    print(f"wrote {BUILD / 'handbook.pdf'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
