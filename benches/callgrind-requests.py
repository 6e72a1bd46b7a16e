#!/usr/bin/env python3
"""Instructions per request in one callgrind dump of the server (benches/instructions).

Reads the dump's total instruction count, the number of requests hyper parsed meanwhile (calls of
`Http1Transaction::parse`, one per request), and with a second argument N > 0 the N functions with the most
instructions of their own (not of what they call), per request. Usage: callgrind-requests.py DUMP [N]
"""

import re
import sys

FUNCTION = re.compile(r"(c?fn)=\((\d+)\)(?: (.*))?")
REQUEST = re.compile(r"Http1Transaction>::parse$")


def main(path: str, top: int) -> None:
    names: dict[str, str] = {}
    own: dict[str, int] = {}
    calls: dict[str, int] = {}
    scenario, total = "?", 0
    current = callee = None
    in_call = False
    with open(path, errors="replace") as dump:
        for line in dump:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                parts = line.split()
                if len(parts) >= 2:
                    if in_call:
                        in_call = False  # the inclusive cost of a call, not the caller's own
                    else:
                        own[current] = own.get(current, 0) + int(parts[1])
                continue
            match = FUNCTION.match(line)
            if match:
                kind, ident, name = match.groups()
                if name:
                    names[ident] = name.strip()
                if kind == "fn":
                    current = ident
                else:
                    callee = ident
                continue
            if line.startswith("calls="):
                in_call = True
                calls[callee] = calls.get(callee, 0) + int(line.split("=")[1].split()[0])
            elif line.startswith("desc: Trigger: dump "):
                scenario = line.split("dump ", 1)[1].strip()
            elif line.startswith("summary:"):
                total = int(line.split()[1])
    requests = sum(n for ident, n in calls.items() if REQUEST.search(names.get(ident, "")))
    if requests == 0:
        print(f"{scenario}: no request parsed in this dump")
        return
    print(f"{scenario}: {total / requests:,.0f} instructions per request ({requests} requests, {total:,} instructions)")
    if top > 0:
        by_name: dict[str, int] = {}
        for ident, cost in own.items():
            name = names.get(ident, "?")
            by_name[name] = by_name.get(name, 0) + cost
        for name, cost in sorted(by_name.items(), key=lambda item: -item[1])[:top]:
            print(f"  {cost / requests:8,.0f}  {100 * cost / max(total, 1):4.1f}%  {name[:150]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
