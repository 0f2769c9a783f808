"""Replay copied snippets in this fresh interpreter, as a reader pasting them would.

Reads JSON ``{"kind": "listings" | "session", "code": [...]}`` on stdin and prints JSON
``{"errors": [...]}``. Listings run as one script, in page order. A session is fed to an
interactive console statement by statement, as if pasted at the ``>>>`` prompt: an exception
prints a traceback and the paste goes on, just as in a real REPL.
"""

import code
import io
import json
import sys
import os
import tempfile
import traceback
import types


def run_listings(blocks):
    module = types.ModuleType("__copied__")  # a real module: dataclasses look themselves up in sys.modules
    sys.modules[module.__name__] = module
    module.__file__ = os.path.join(tempfile.mkdtemp(), "copied_listings.py")  # as if saved to a file
    namespace = module.__dict__
    # A page may show a file's imports after an early listing of it; Python wants
    # `from __future__` first in a script, so those lines move to the top.
    script = "\n\n".join(blocks).splitlines()
    future = [line for line in script if line.startswith("from __future__ import")]
    script = future + [line for line in script if line not in future]
    try:
        exec(compile("\n".join(script), "<copied listings>", "exec"), namespace)
    except BaseException:  # report, never crash the replay
        return [traceback.format_exc(limit=3)]
    return []


def run_session(blocks):
    console = code.InteractiveConsole({"__name__": "__console__"})
    errors = []

    def record(*args, **kwargs):
        errors.append("".join(traceback.format_exception(*sys.exc_info(), limit=3)))

    console.showtraceback = record
    console.showsyntaxerror = lambda *a, **k: record()
    for block in blocks:
        for line in block.splitlines() + [""]:
            console.push(line)
    return errors


def main():
    request = json.load(sys.stdin)
    sys.stdout = io.StringIO()  # snippets may print; keep our JSON clean
    errors = run_listings(request["code"]) if request["kind"] == "listings" else run_session(request["code"])
    sys.stdout = sys.__stdout__
    json.dump({"errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
