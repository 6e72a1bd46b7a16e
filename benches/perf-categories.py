#!/usr/bin/env python3
"""Summarises `perf script -F comm,pid,ip,sym` output of a whole-machine `perf record -g` (benches/profile), with
`ps -eo pid=,comm=` taken meanwhile to name each sample's process (threads have names of their own).

Prints each process's share of the samples, PostgreSQL's samples by the phase of its work (the first matching
rule below, on the frames perf resolved), and the functions most often found anywhere on PostgreSQL's and on the
server's stacks (inclusive: a function and everything it called).
"""
import collections
import sys

# (phase, frames any of which puts a sample in it), in order: the first match wins. Foreign-key checks and
# PL/pgSQL triggers run inside AfterTriggerEndQuery (end of statement) or AfterTriggerFireDeferred (commit).
PHASES = [
    ("commit: deferred triggers (the ledger's balance checks)", {"AfterTriggerFireDeferred"}),
    # SPI_execute_snapshot is how the foreign-key triggers run their check query (nothing else in core uses it).
    ("end of statement: foreign-key checks", {"SPI_execute_snapshot", "RI_FKey_check_ins", "ri_PerformCheck"}),
    ("end of statement: PL/pgSQL statement triggers", {"plpgsql_call_handler"}),
    ("end of statement: other", {"AfterTriggerEndQuery"}),
    ("executor: finish (data-modifying CTEs: inserts, index entries)", {"standard_ExecutorFinish"}),
    ("executor: start (plan initialisation)", {"standard_ExecutorStart"}),
    ("executor: end", {"standard_ExecutorEnd"}),
    ("executor: run", {"standard_ExecutorRun"}),
    ("commit: WAL flush", {"XLogFlush"}),
    ("commit: other", {"CommitTransactionCommand", "CommitTransaction"}),
    ("parse, bind, plan", {"exec_parse_message", "exec_bind_message", "GetCachedPlan", "pg_plan_queries"}),
    ("simple queries (BEGIN, SET, COMMIT)", {"exec_simple_query"}),
    ("client protocol: receive", {"pq_getbyte", "pq_getmessage", "secure_read", "secure_raw_read"}),
    ("client protocol: send", {"socket_flush", "internal_flush", "secure_write", "secure_raw_write"}),
    ("autovacuum", {"AutoVacWorkerMain", "do_autovacuum"}),
    ("background writer, checkpointer, WAL writer", {"BackgroundWriterMain", "CheckpointerMain", "WalWriterMain"}),
]
SERVER = "dukasync"


def processes(path):
    """pid -> process name, from `ps -eo pid=,comm=`."""
    names = {}
    with open(path) as lines:
        for line in lines:
            parts = line.split(None, 1)
            if len(parts) == 2:
                names[parts[0]] = parts[1].strip()
    return names


def samples(path, names):
    """Yields (process name, [frames, leaf first]) for each sample."""
    command, frames = None, None
    with open(path, errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            if not line[0].isspace():
                if command is not None:
                    yield command, frames
                # "comm pid": the thread's name, then its process id.
                head = line.split()
                command, frames = names.get(head[-1], head[0]), []
            elif frames is not None:
                # "address symbol"; a Rust symbol may hold spaces (`<T as Trait>::f`).
                parts = line.split(None, 1)
                frames.append(parts[1].strip().split("+0x")[0] if len(parts) > 1 else "?")
    if command is not None:
        yield command, frames


def share(count, total):
    return f"{100 * count / total:5.1f}%" if total else "  n/a"


def main(path, names):
    by_command = collections.Counter()
    phases = collections.Counter()
    functions = {"postgres": collections.Counter(), SERVER: collections.Counter()}
    totals = collections.Counter()
    for command, frames in samples(path, names):
        by_command[command] += 1
        group = command if command in functions else None
        if group is None:
            continue
        totals[group] += 1
        on_stack = set(frames) - {"[unknown]", "?"}
        for f in on_stack:
            functions[group][f] += 1
        if group == "postgres":
            phase = next((name for name, marks in PHASES if on_stack & marks), "other")
            phases[phase] += 1
    total = sum(by_command.values())
    print(f"{total} samples of every CPU; by process:")
    for command, count in by_command.most_common(8):
        print(f"  {share(count, total)} {command}")
    print(f"\nPostgreSQL ({totals['postgres']} samples) by phase:")
    for phase, count in phases.most_common():
        print(f"  {share(count, totals['postgres'])} {phase}")
    for group, label in (("postgres", "PostgreSQL"), (SERVER, "the server")):
        print(f"\nFunctions most often on {label}'s stacks (share of its samples; those on 95% or more, the")
        print("process's and threads' entry points, left out):")
        common = [(f, n) for f, n in functions[group].most_common() if n < 0.95 * totals[group]]
        for f, count in common[:25]:
            print(f"  {share(count, totals[group])} {f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: perf-categories.py <perf script -F comm,pid,ip,sym output> <ps -eo pid=,comm= output>")
    main(sys.argv[1], processes(sys.argv[2]))
