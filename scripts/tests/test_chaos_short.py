"""The short chaos run (scripts/chaos.py --short) as a test: a few thousand events, a few kills
and short outages against the real binaries, under 3 minutes on a 2-core machine.

It needs built service binaries, so it runs only when asked: `make test` runs it after the
Rust tests have built them, with RELANCE_CHAOS_SHORT=1. RELANCE_CHAOS_BUILD chooses the build
(default debug, what `make test` builds). The table is printed; chaos/results-short.md keeps it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import unittest
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]


@unittest.skipUnless(os.environ.get("RELANCE_CHAOS_SHORT") == "1",
                     "the short chaos run needs built binaries: set RELANCE_CHAOS_SHORT=1 (make test does)")
class ShortChaosRun(unittest.TestCase):
    def test_relance_keeps_its_guarantees_through_kills_and_outages(self) -> None:
        build = os.environ.get("RELANCE_CHAOS_BUILD", "debug")
        result = subprocess.run([sys.executable, str(SCRIPTS / "chaos.py"), "--short", "--build", build],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        print(result.stdout[-12000:])
        self.assertNotEqual(result.returncode, 2, "the chaos run could not be carried out (see its log above)")
        self.assertEqual(result.returncode, 0, "a guarantee failed: see the table above and chaos/results-short.md")


if __name__ == "__main__":
    unittest.main()
