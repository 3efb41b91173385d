#!/usr/bin/env python3
"""A/B of the PostgreSQL store's two hot prepared statements at production-like table sizes.

Usage: python3 coordinator/benches/plan_ab.py BASE_REV [RUNS]

Starts a throwaway PostgreSQL cluster (as the `postgres` user when run as root, on a free
127.0.0.1 port, in a temporary directory; stopped by its PID at the end), creates the
store's schema from this checkout, fills it like a deployment of 100 PoPs and 10,000
tenants (1,000,000 fetch records, 4,900,000 ack rows, 50 releases of 1,000 tenants), then
runs each statement as BASE_REV and as this checkout have it, with the generic plan a
prepared statement settles on (`plan_cache_mode = force_generic_plan`), and prints the
execution times PostgreSQL reports (`EXPLAIN ANALYZE`, each in a rolled-back transaction):

- the ack batch (`RECORD_ACKS`, postgres/edge.rs): 32 acks of one PoP, all vouched for by
  the caller's memory, then none vouched for;
- the completion pass (`COMPLETED`, postgres/completion.rs): 32 ranges of one PoP that
  acknowledged 999 of the 1,000 tenants of the open release.

Figures go to BENCHMARKS.md. Needs the PostgreSQL server binaries (`cargo xtask bootstrap`).
"""

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {
    "RECORD_ACKS": "coordinator/src/store/postgres/edge.rs",
    "COMPLETED": "coordinator/src/store/postgres/completion.rs",
    "SCHEMA": "coordinator/src/store/postgres/schema.rs",
}

FILL = """
INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, created_at, updated_at)
  SELECT 't' || i, '[]', 60, '1.0.0', 'h', 0, 0 FROM generate_series(1, 10000) i;
INSERT INTO releases (seq, id, kind, status, committed_at, execution_log)
  SELECT g, 'r' || g, 'release', CASE WHEN g < 50 THEN 'converged' ELSE 'committed' END, 0, '{}'
    FROM generate_series(1, 50) g;
INSERT INTO release_tenants (release_id, tenant_id, position, from_generation, to_generation,
    from_schema_version, to_schema_version, from_contract_hash, to_contract_hash)
  SELECT 'r' || g, 't' || i, i, g, g + 1, '1', '1', 'h', 'h' FROM generate_series(1, 50) g, generate_series(1, 1000) i;
INSERT INTO fetches (pop, tenant_id, generation, lease_until)
  SELECT 'pop-' || n, 't' || i, 60, 0 FROM generate_series(1, POPS) n, generate_series(1, 10000) i;
INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
  SELECT 'pop-' || n, 't' || i, g, 0, 0 FROM generate_series(1, POPS) n, generate_series(1, 1000) i, generate_series(2, 50) g;
"""


def const(source, name):
    """The text of the Rust `const NAME: &str = "...";` in `source`."""
    m = re.search(r'const %s: &str = "(.*?)";' % name, source, re.S)
    if not m:
        sys.exit(f"no const {name} found")
    return m.group(1)


def at(rev, name):
    path = FILES[name]
    if rev is None:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return const(f.read(), name)
    return const(subprocess.check_output(["git", "-C", ROOT, "show", f"{rev}:{path}"], text=True), name)


def bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        sys.exit("no PostgreSQL server binaries (cargo xtask bootstrap)")
    return os.path.dirname(found[-1])


def as_postgres(args):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def array(values):
    return "{" + ",".join(values) + "}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    base, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    bins = bin_dir()
    tmp = tempfile.mkdtemp(prefix="edgegen-plan-ab-")
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    data, port = os.path.join(tmp, "data"), free_port()
    subprocess.run(as_postgres([f"{bins}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL)
    options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c autovacuum=off"
    subprocess.run(as_postgres([f"{bins}/pg_ctl", "-D", data, "-o", options, "-l", f"{tmp}/log", "-w", "start"]),
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "postmaster.pid"), encoding="utf-8") as f:
        pid = int(f.readline())
    try:
        psql = [f"{bins}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
        subprocess.run(psql + ["-c", "CREATE DATABASE ab"], check=True)
        db = psql + ["-d", "ab"]
        # Statistics taken while one PoP's rows were stored, then the other 99 PoPs' rows:
        # the tables grew 100-fold since (autovacuum is off in this cluster).
        first = FILL.replace("1, POPS", "1, 1") + "ANALYZE;"
        rest = FILL.split("INSERT INTO fetches", 1)[1].replace("1, POPS", "2, 100")
        subprocess.run(db, input=at(None, "SCHEMA") + first, text=True, check=True, stderr=subprocess.DEVNULL)
        subprocess.run(db, input="INSERT INTO fetches" + rest, text=True, check=True)
        ack_types = "text[], text[], bigint[], bigint[], bigint[], bool[], bool[], bigint"
        prepare = ["SET plan_cache_mode = force_generic_plan;"]
        for label, rev in (("base", base), ("this", None)):
            prepare.append(f"PREPARE acks_{label}({ack_types}) AS {at(rev, 'RECORD_ACKS')};")
            prepare.append(f"PREPARE completed_{label}(text[], text[], bigint[], bigint[]) AS {at(rev, 'COMPLETED')};")
        n = 32
        pops, tenants = array(["pop-1"] * n), array([f"t{i}" for i in range(1, n + 1)])
        gens, zeros, ords = array(["51"] * n), array(["0"] * n), array([str(i) for i in range(n)])
        above = array(["50"] * n)
        cases = {
            "ack batch, 32 acks, all vouched": "EXECUTE acks_LABEL('%s','%s','%s','%s','%s','%s','%s',1)"
            % (pops, tenants, gens, zeros, ords, array(["t"] * n), array(["f"] * n)),
            "ack batch, 32 acks, none vouched": "EXECUTE acks_LABEL('%s','%s','%s','%s','%s','%s','%s',1)"
            % (pops, tenants, gens, zeros, ords, array(["f"] * n), array(["f"] * n)),
            "completion pass, 32 ranges, 999 of 1,000 tenants acknowledged": "EXECUTE completed_LABEL('%s','%s','%s','%s')"
            % (pops, tenants, above, gens),
        }
        setup = {
            "completion pass, 32 ranges, 999 of 1,000 tenants acknowledged":
                "INSERT INTO acks SELECT 'pop-1', 't' || i, 51, 0, 0 FROM generate_series(1, 1000) i WHERE i <> 999;",
        }
        print(f"| statement (generic plan) | statistics | {base} | this checkout |\n|---|---|---|---|")
        for stats in ("taken at 1 % of the rows", "fresh (VACUUM ANALYZE)"):
            if stats.startswith("fresh"):
                subprocess.run(db + ["-c", "VACUUM ANALYZE"], check=True)
            measure(db, prepare, cases, setup, runs, base, stats)
    finally:
        subprocess.run(["kill", "-QUIT", str(pid)], check=False)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        shutil.rmtree(tmp, ignore_errors=True)


def measure(db, prepare, cases, setup, runs, base, stats):
    """Prints one row per case: the execution times of BASE_REV's statement and this one's."""
    for case, statement in cases.items():
        times = {}
        for label in ("base", "this"):
            script = "\n".join(prepare)
            for _ in range(runs):
                script += f"\nBEGIN; {setup.get(case, '')} EXPLAIN (ANALYZE, SUMMARY) {statement.replace('LABEL', label)}; ROLLBACK;"
            out = subprocess.run(db, input=script, text=True, check=True, capture_output=True).stdout
            times[label] = re.findall(r"Execution Time: ([0-9.]+) ms", out)
        print(f"| {case} | {stats} | {' / '.join(times['base'])} ms | {' / '.join(times['this'])} ms |")


if __name__ == "__main__":
    main()
