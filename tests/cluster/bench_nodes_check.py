#!/usr/bin/env python3
"""Checks what lightring-bench says about the nodes of its job (ctest driver's checker).

    bench_nodes_check.py JSON HEADER --nodes N --ranks-per-node R --names A,B,...
                         [--forced-one-level] [--link A,B,G] [--inter-link A,B]

JSON is the --json file of a --check run of schedule auto, HEADER its stdout. Exit status 0
only when:
  topology   num_nodes N, ranks_per_node R, blocked, and node i is NAMES[i] holding the ranks
             [i*R, (i+1)*R) (mpirun --map-by ppr:R:node);
  link       ranks_per_node R "measured" and the span of the world group: N nodes, N-1 of the
             P-1 ring hops between nodes; with --forced-one-level (--ranks-per-node 0 given)
             R 0 "--ranks-per-node" and no span;
  auto       its three costs, its schedule and every row's schedule equal the reference cost
             model of tests/bench_check_json.py at the state size of the rows (two levels at
             R unless forced to one level), and its reason names the nodes;
  rows       every row checked against the unsharded result (rel_err within 1e-4, 0 wrong);
  header     the "# nodes:" line says "N nodes x R ranks" with every name, the cost model line
             says "ranks/node R (measured)" (or 0 (--ranks-per-node)), the auto line the schedule.
Standard library only.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench_check_json as ref  # noqa: E402  (the cost model written as a reference)


def fail(what):
    print(f"bench_nodes_check: FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def expect(cond, what):
    if not cond:
        fail(what)


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("json")
    p.add_argument("header")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--ranks-per-node", type=int, required=True)
    p.add_argument("--names", required=True)
    p.add_argument("--forced-one-level", action="store_true")
    p.add_argument("--link", default="1.5,5,5")
    p.add_argument("--inter-link", default="10,50")
    a = p.parse_args(argv)
    names = a.names.split(",")
    N, R = a.nodes, a.ranks_per_node
    P = N * R
    expect(len(names) == N, f"--names has {len(names)} names for {N} nodes")
    doc = json.load(open(a.json))
    header = open(a.header).read().splitlines()

    expect(doc["world_size"] == P, f"world_size {doc['world_size']}, expected {P}")
    topo = doc.get("topology")
    expect(topo is not None, "no 'topology' in the JSON")
    expect(topo["num_nodes"] == N and topo["ranks_per_node"] == R and topo["blocked"] is True,
           f"topology {topo}: expected {N} nodes x {R} ranks, blocked")
    want_nodes = [{"name": names[i], "ranks": list(range(i * R, (i + 1) * R))} for i in range(N)]
    expect(topo["nodes"] == want_nodes, f"topology nodes {topo['nodes']}, expected {want_nodes}")

    link = doc["link"]
    if a.forced_one_level:
        expect(link["ranks_per_node"] == 0 and link["ranks_per_node_from"] == "--ranks-per-node"
               and link["span_nodes"] is None, f"link {link}: expected R 0 from the flag, no span")
        model_R = 0
    else:
        expect(link["ranks_per_node"] == R and link["ranks_per_node_from"] == "measured",
               f"link {link}: expected ranks_per_node {R}, measured")
        expect(link["span_nodes"] == N and link["span_crossings"] == N - 1,
               f"link {link}: expected a span of {N} nodes, {N - 1} crossings")
        model_R = R
    alpha, beta, gamma = (float(x) for x in a.link.split(","))
    inter = [float(x) for x in a.inter_link.split(",")]
    model = ref.link_model(alpha, beta, gamma, model_R, *inter)
    for key, value in (("alpha_us", alpha), ("beta_GBps", beta), ("gamma_GBps", gamma),
                       ("inter_alpha_us", inter[0]), ("inter_beta_GBps", inter[1])):
        expect(math.isclose(link[key], value, rel_tol=1e-9),
               f"link {key} {link[key]}, expected {value}")

    rows = doc["rows"]
    expect(len(rows) > 0, "no rows")
    m = rows[0]["state_bytes"]
    auto = doc.get("auto")
    expect(auto is not None, "no 'auto' in the JSON")
    expect(auto["state_bytes"] == m, f"auto state_bytes {auto['state_bytes']}, rows {m}")
    for s in ref.SCHEDULES:
        want = ref.cost_us(s, P, m, model)
        expect(math.isclose(auto[f"{s}_us"], want, rel_tol=1e-9),
               f"auto {s}_us {auto[f'{s}_us']}, reference {want:.6g}")
    pick = ref.auto_choice(P, m, model)
    expect(auto["schedule"] == pick, f"auto picked {auto['schedule']}, reference {pick}")
    span_nodes = 1 if a.forced_one_level else N
    expect(auto["nodes"] == span_nodes, f"auto priced {auto['nodes']} nodes, expected {span_nodes}")
    where = "one level" if a.forced_one_level else f"{N} nodes, {N - 1} of {P - 1} ring hops"
    expect(where in auto["reason"], f"auto reason {auto['reason']!r} does not say '{where}'")
    for r in rows:
        tag = f"N={r['N']} {r['pass']}"
        expect(r["schedule"] == pick, f"{tag}: ran {r['schedule']}, auto picks {pick}")
        expect(r["rel_err"] is not None and r["rel_err"] <= 1e-4 and r["num_wrong"] == 0,
               f"{tag}: rel_err {r['rel_err']}, {r['num_wrong']} wrong")

    node_lines = [l for l in header if l.startswith("# nodes: ")]
    expect(len(node_lines) == 1, f"{len(node_lines)} '# nodes:' lines in the header")
    expect(f"{N} nodes x {R} ranks" in node_lines[0] and all(n in node_lines[0] for n in names),
           f"header {node_lines[0]!r} does not say {N} nodes x {R} ranks with {names}")
    said = (f"ranks/node 0 (--ranks-per-node)" if a.forced_one_level
            else f"ranks/node {R} (measured)")
    expect(any(l.startswith("# cost model: ") and said in l for l in header),
           f"no cost model line with '{said}' in the header")
    expect(any(l.startswith(f"# auto: {pick}, ") for l in header),
           f"no '# auto: {pick}, ...' line in the header")
    print(f"bench_nodes_check: ok: {N} nodes x {R} ranks ({', '.join(names)}), auto {pick} "
          f"(ring {auto['ring_us']:.1f}, allgather {auto['allgather_us']:.1f}, "
          f"scan {auto['scan_us']:.1f} us), {len(rows)} rows checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
