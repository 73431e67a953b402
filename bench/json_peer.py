#!/usr/bin/python3
"""json_peer.py - the Python side of bench_json.c: the same persona.chat
request through Python's json and ujson (loads + dumps with
separators=(',', ':')), measured the same way: 7 runs of N iterations
(N = argv[1], default 200,000) timed in thread CPU time, median run reported
for the round trip, parse-only and serialize-only. Same key=value output as
bench_json.

Run with Debian's /usr/bin/python3 (python3-ujson); a missing ujson is
reported as an "impl=ujson error=..." line instead of a measure.
"""
import json
import statistics
import sys
import time

REQUEST = ('{"jsonrpc":"2.0","method":"persona.chat","params":{"message":"Hello Aria! '
           'Tell me about the music of the elven kingdoms and your travels.",'
           '"token_budget":500},"id":"req-1732530000123"}')
RUNS = 7
SEP = (',', ':')


def make_runs(loads, dumps):
    tree = loads(REQUEST)

    def roundtrip(n):
        for _ in range(n):
            dumps(loads(REQUEST), separators=SEP)

    def parse(n):
        for _ in range(n):
            loads(REQUEST)

    def serialize(n):
        for _ in range(n):
            dumps(tree, separators=SEP)

    return [('roundtrip', roundtrip), ('parse', parse), ('serialize', serialize)]


def measure(impl, name, fn, iters):
    fn(iters // 10 + 1)  # warm-up
    ns = []
    for _ in range(RUNS):
        t0 = time.thread_time_ns()
        fn(iters)
        ns.append((time.thread_time_ns() - t0) / iters)
    ns.sort()
    med = statistics.median(ns)
    print(f'bench=json impl={impl} measure={name} iters={iters} runs={RUNS} clock=thread_cpu '
          f'ns_per_op={med:.1f} ops_per_s={1e9 / med:.0f} '
          f'min_ns={ns[0]:.1f} max_ns={ns[-1]:.1f}', flush=True)


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    impls = [('python-json', json)]
    try:
        import ujson
        impls.append(('ujson', ujson))
    except ImportError as e:
        print(f'bench=json impl=ujson error="{e}"', flush=True)
    for impl, mod in impls:
        if mod.dumps(mod.loads(REQUEST), separators=SEP) != REQUEST:
            sys.exit(f'json_peer: {impl} does not reproduce the request')
        for name, fn in make_runs(mod.loads, mod.dumps):
            measure(impl, name, fn, iters)


if __name__ == '__main__':
    main()
