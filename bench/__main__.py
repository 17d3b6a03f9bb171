"""`make bench`: every figure on its own line as `BENCH <name> <value> <unit>`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

UNITS = {"_us": "µs", "_ms": "ms", "_s": "s", "_mb": "MiB", "_per_s": "/s", "_rps": "req/s", "_ratio": "x"}


def unit(name: str) -> str:
    for suffix, label in sorted(UNITS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return label
    return "count" if name.endswith(("_contacts", "_errors", "_sessions")) else "x"


def main() -> int:
    suites = ["bench.routing", "bench.intake", "bench.telephony", "bench.crm", "bench.crm_server", "bench.reports"]
    for module_name in suites:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue  # a suite not written yet
            raise
        print(f"# {module_name}", flush=True)
        # each suite in a fresh interpreter: what one leaves in memory (the routing suite's
        # 10,000 contacts) must not slow the next one's garbage collections
        code = f"import json, {module_name} as m; print(json.dumps(m.run()))"
        out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True).stdout
        for name, value in json.loads(out.strip().splitlines()[-1]).items():
            print(f"BENCH {name} {value:.3f} {unit(name)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
