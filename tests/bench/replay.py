#!/usr/bin/python3
"""tests/bench/replay.py - what the rolling windows cost Redis, batch by batch.

  replay.py proxy LISTEN_PORT REDIS_PORT FILE MAX_BYTES
      forwards one daemon's Redis connections and writes the first MAX_BYTES
      the daemon sent into FILE (run in the background during a drain).
  replay.py measure FILE REDIS_PORT SCRIPT_C [REPEATS]
      takes the apply batches (EVALSHA calls) out of FILE and replays the
      last of them against an empty Redis after the ones before it, in three
      forms, REPEATS times each, printing the median and least time Redis
      spent in the script (INFO commandstats, evalsha usec) per form:
        full    the batch as sent: totals, windows, state, detector;
        totals  the same batch without its window records, which is what
                the daemon sends with pipeline.windows=false;
        floor   totals plus, per video, one HSET of the window fields that
                changed (no read, no rates, leaderboards, series or detector)
                and the window state: the least any design writes that keeps
                SPEC 3's windows visible and durable in every flush.
      SCRIPT_C is lib/apply_script.c, the script each form runs.
"""
import asyncio
import ast
import re
import statistics
import sys

import redis


def proxy(listen_port, redis_port, path, max_bytes):
    out = open(path, "wb")
    left = [max_bytes]

    async def pipe(reader, writer, record):
        while data := await reader.read(1 << 16):
            if record and left[0] > 0:
                out.write(data[:left[0]])
                left[0] -= len(data)
                out.flush()
            writer.write(data)
            await writer.drain()
        writer.close()

    async def conn(cr, cw):
        rr, rw = await asyncio.open_connection("127.0.0.1", redis_port)
        await asyncio.gather(pipe(cr, rw, True), pipe(rr, cw, False))

    async def main():
        srv = await asyncio.start_server(conn, "127.0.0.1", listen_port)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def commands(data):
    """Every RESP array in data, as lists of bytes."""
    i = 0
    try:
        while i < len(data) and data[i:i + 1] == b"*":
            j = data.index(b"\r\n", i)
            n, i = int(data[i + 1:j]), j + 2
            args = []
            for _ in range(n):
                j = data.index(b"\r\n", i)
                ln, i = int(data[i + 1:j]), j + 2
                if i + ln > len(data):
                    return
                args.append(data[i:i + ln])
                i += ln + 2
            yield args
    except ValueError:
        return  # the capture ends inside this command


def records(argv):
    """(kind, args) of each record after the 10 header arguments."""
    i = 10
    while i < len(argv):
        k, a = argv[i], argv
        if k == b"v":
            j = i + 4
            j += 1 + 2 * int(a[j])   # totals
            j += 1 + 2 * int(a[j])   # demo
            j += 1 + int(a[j])       # users
            j += 1 + int(a[j])       # sharers
            j += 1 + 2 * int(a[j])   # platforms
        elif k == b"w":
            s = i + 3 + 2 * int(a[i + 2])
            j = s + 1 + 5 * int(a[s])
        elif k == b"m":
            j = i + 5
        elif k in (b"c", b"f", b"h", b"a", b"s"):
            j = i + 3
        elif k == b"u":
            j = i + 2
        else:
            raise ValueError("unknown record %r" % k)
        yield k, a[i:j]
        i = j


def keep(argv, kinds):
    out = list(argv[:10])
    for k, rec in records(argv):
        if k in kinds:
            out += rec
    return out


FLOOR_W = """  elseif kind == 'w' then
    local id = ARGV[i + 1]
    local nd = tonumber(ARGV[i + 2])
    local p, s = i + 3, i + 3 + 2 * nd
    i = s + 1 + 5 * tonumber(ARGV[s])
    local args = {'updated_ms', T}
    for j = p, s - 1, 2 do
      args[#args + 1] = WF[tonumber(ARGV[j])]; args[#args + 1] = ARGV[j + 1]
    end
    call('HSET', pfx .. 'v:{' .. id .. '}', unpack(args))
"""


def scripts(path):
    src = open(path).read()
    body = src[src.index("sp_apply_script[] ="):]
    full = "".join(ast.literal_eval(m) for m in re.findall(r'^\s*("(?:[^"\\]|\\.)*")', body, re.M))
    a, b = full.index("  elseif kind == 'w' then\n"), full.index("  elseif kind == 'f' then\n")
    return full, full[:a] + FLOOR_W + full[b:]


def replay_forms(r, forms, batches, repeats, run):
    res = {}
    for _ in range(repeats):
        for name, (script, form) in forms.items():
            r.flushall()
            sha = r.script_load(script)
            for b in batches[:-1]:
                run(sha, form(b))
            res.setdefault(name, []).append(run(sha, form(batches[-1])))
    return res


def measure(path, redis_port, script_c, repeats):
    batches = [c[3:] for c in commands(open(path, "rb").read())
               if c and c[0].upper() == b"EVALSHA" and len(c) > 1000]
    # The last batch that carries events (not only a wave of decay).
    while batches and sum(1 for k, _ in records(batches[-1]) if k == b"v") < 1000:
        batches.pop()
    if len(batches) < 2:
        sys.exit("replay: fewer than 2 batches with events in %s" % path)
    r = redis.Redis(port=redis_port)
    full, floor = scripts(script_c)
    forms = {
        "full": (full, lambda a: a),
        "totals": (full, lambda a: keep(a, (b"v", b"c"))),
        "floor": (floor, lambda a: keep(a, (b"v", b"c", b"w", b"s"))),
    }

    def run(sha, argv):
        okey, ofield, frm, _, _, skey, sfrom = argv[:7]
        # Each batch checks the markers the one before it left; set them as
        # that batch expects, so that it applies whatever ran before.
        r.hset(okey, ofield, frm) if frm else r.hdel(okey, ofield)
        r.hset(skey, "#seq", sfrom) if sfrom else r.hdel(skey, "#seq")
        r.config_resetstat()
        res = r.execute_command("EVALSHA", sha, 0, *argv)
        assert res[0] == b"ok", res
        return r.info("commandstats")["cmdstat_evalsha"]["usec"] / 1e6

    # The AOF stays on (its writes are part of the cost) but is not
    # rewritten meanwhile: a rewrite's fork slows whichever form it meets.
    pct = r.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
    r.config_set("auto-aof-rewrite-percentage", 0)
    try:
        res = replay_forms(r, forms, batches, repeats, run)
    finally:
        r.config_set("auto-aof-rewrite-percentage", pct)

    last = batches[-1]
    videos = sum(1 for k, _ in records(last) if k == b"v")
    print("replay: %d batches; the last: %d arguments, %d videos" % (len(batches), len(last), videos))
    med = {n: statistics.median(v) for n, v in res.items()}
    for n, v in res.items():
        print("RESULT replay_%s_s_median=%.3f min=%.3f" % (n, med[n], min(v)))
    # As throughputs: windows on against windows off.
    print("RESULT replay_totals_over_full=%.2f replay_totals_over_floor=%.2f" %
          (med["totals"] / med["full"], med["totals"] / med["floor"]))


if __name__ == "__main__":
    if sys.argv[1] == "proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "measure":
        measure(sys.argv[2], int(sys.argv[3]), sys.argv[4],
                int(sys.argv[5]) if len(sys.argv) > 5 else 5)
    else:
        sys.exit(__doc__)
