#!/usr/bin/env python3
"""Seeded random op-log generator for the corpus (fsx-style logs that mix every op).

Usage: gen.py --seed N --ops COUNT [--max-size BYTES] > NAME.ops
       gen.py --fill-sizes TEMPLATE --dir DIR > NAME.ops

--fill-sizes: TEMPLATE is an op log whose lines leave out the last number (SIZE); each op is
applied in order on a fresh file in DIR (a Linux filesystem, as apply.py does) and the log is
printed with the file size before each op filled in. Hand-written cases are made this way.

Every op it writes is valid by the rules of FORMAT.md (aligned where Linux requires it,
never overlapping where Linux refuses it), so the file size it records before each op is
exact; `model.py` checks those sizes (it warns on stderr when one differs) and `apply.py`
gives Linux's answer. Same seed, same log (Python's `random.Random(seed)`).
Measurement instrument, not product code. Python 3 stdlib only.
"""

import argparse
import os
import random
import sys

BS = 4096


def fill_sizes(template, directory):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import apply  # noqa: E402  (Target, run, parse_num, NARGS)

    t = apply.Target(directory, drop=False)
    mode_direct = False
    k = 0
    try:
        with open(template, encoding="ascii") as f:
            for lineno, raw in enumerate(f.read().split("\n"), 1):
                line = raw.strip()
                if lineno == 1 and line == "# mode: direct":
                    mode_direct = True
                if not line or line.startswith("#"):
                    print(line)
                    continue
                toks = line.split()
                n = apply.NARGS[toks[0]] - 1
                size = os.fstat(t.fd).st_size
                print(" ".join(toks[:1 + n] + ["0x%x" % size] + toks[1 + n:]))
                k += 1
                op = {"k": k, "name": toks[0], "args": [apply.parse_num(x) for x in toks[1:1 + n]] + [size],
                      "flags": set(toks[1 + n:]), "skip": False}
                if op["name"] == "exchange_range":
                    continue  # never executed (ENOTSUP)
                try:
                    apply.run(op, t, mode_direct)
                except OSError as e:
                    if e.errno is None:
                        raise
                if "close_open" in op["flags"]:
                    t.cycle()
    finally:
        t.close_all()
        os.unlink(t.path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int)
    ap.add_argument("--ops", type=int)
    ap.add_argument("--max-size", type=int, default=2 << 20)
    ap.add_argument("--fill-sizes", metavar="TEMPLATE")
    ap.add_argument("--dir")
    args = ap.parse_args()
    if args.fill_sizes:
        if not args.dir:
            ap.error("--fill-sizes needs --dir")
        fill_sizes(args.fill_sizes, args.dir)
        return
    if args.seed is None or args.ops is None:
        ap.error("--seed and --ops are required")
    rng = random.Random(args.seed)
    top = args.max_size
    size = 0
    lines = ["# mode: buffered", "# profile: random seed=%d ops=%d max-size=%d" % (args.seed, args.ops, top)]

    def up(x):
        return (x + BS - 1) // BS * BS

    def rand_range(align, maxlen):
        a = align
        off = rng.randrange(0, top // a) * a
        ln = rng.randrange(1, maxlen // a + 1) * a
        return off, min(ln, top - off) or a

    weights = [
        ("write", 20), ("read", 16), ("truncate", 4), ("fallocate", 5), ("punch_hole", 5),
        ("zero_range", 5), ("collapse_range", 3), ("insert_range", 3), ("clone_range", 6),
        ("dedupe_range", 4), ("copy_range", 5), ("fsync", 3), ("write_atomic", 4),
    ]
    names = [n for n, _ in weights]
    cum = [w for _, w in weights]
    for _ in range(args.ops):
        name = rng.choices(names, cum)[0]
        toks = []
        before = size
        if name in ("write", "read"):
            if rng.random() < 0.25:
                off, ln = rand_range(512, 64 << 10)
                toks.append("direct")
            else:
                off, ln = rand_range(1, 64 << 10)
            if name == "read" and size > 0 and rng.random() < 0.8:
                off = rng.randrange(0, size)
                if "direct" in toks:
                    off -= off % 512
            if name == "write":
                size = max(size, off + ln)
            line = "%s 0x%x 0x%x 0x%x" % (name, off, ln, before)
        elif name == "write_atomic":
            ln = BS << rng.randrange(0, 5)
            off = rng.randrange(0, top // ln) * ln
            size = max(size, off + ln)
            line = "write_atomic 0x%x 0x%x 0x%x" % (off, ln, before)
        elif name == "truncate":
            new = rng.randrange(0, top)
            size = new
            line = "truncate 0x0 0x%x 0x%x" % (new, before)
        elif name in ("fallocate", "punch_hole", "zero_range"):
            off, ln = rand_range(1, 256 << 10)
            keep = name == "punch_hole" or rng.random() < 0.5
            if name != "punch_hole" and keep:
                toks.append("keep_size")
            if name == "fallocate" and rng.random() < 0.3:
                toks.append("unshare")
            if name != "punch_hole" and not keep:
                size = max(size, off + ln)
            line = "%s 0x%x 0x%x 0x%x" % (name, off, ln, before)
        elif name == "collapse_range":
            if size < 2 * BS:
                name, line = "fsync", "fsync 0x0 0x0 0x%x" % before
            else:
                blocks = (size - 1) // BS  # off + len < size
                off = rng.randrange(0, blocks) * BS
                ln = rng.randrange(1, blocks - off // BS + 1) * BS
                ln = min(ln, 128 << 10)
                if off + ln >= size:
                    ln = BS
                size -= ln
                line = "collapse_range 0x%x 0x%x 0x%x" % (off, ln, before)
        elif name == "insert_range":
            if size < BS or size + (128 << 10) > top:
                name, line = "fsync", "fsync 0x0 0x0 0x%x" % before
            else:
                off = rng.randrange(0, (size - 1) // BS + 1) * BS
                ln = rng.randrange(1, 33) * BS
                size += ln
                line = "insert_range 0x%x 0x%x 0x%x" % (off, ln, before)
        elif name in ("clone_range", "dedupe_range", "copy_range"):
            if size < 2 * BS:
                name, line = "fsync", "fsync 0x0 0x0 0x%x" % before
            else:
                line = None
                for _ in range(20):
                    src = rng.randrange(0, up(size) // BS) * BS
                    if src >= size:
                        continue
                    ln = rng.randrange(1, 33) * BS
                    if name == "copy_range" and rng.random() < 0.5:
                        src += rng.randrange(0, BS)
                        ln -= rng.randrange(0, BS)
                    ln = min(ln, up(size) - src)
                    if name == "clone_range" and src + ln > size:
                        ln = size - src  # ends at EOF
                    dst = rng.randrange(0, top // BS) * BS
                    if name == "copy_range" and rng.random() < 0.5:
                        dst += rng.randrange(0, BS)
                    if name == "dedupe_range":
                        if src + ln > size:
                            ln = (size - src) // BS * BS
                        if ln == 0 or dst + ln > size:
                            continue
                    if name == "clone_range" and ln % BS and dst + ln < size:
                        continue
                    if name == "clone_range" and dst + ln > top:
                        continue
                    span = up(ln)
                    if dst < src + span and src < dst + span:
                        continue
                    # copy_range is repeated until LEN: a destination after the source grows the
                    # file past the source's next bytes, so all LEN bytes come.
                    n = ln if dst > src else min(ln, size - src)
                    if name == "clone_range":
                        size = max(size, dst + ln)
                    elif name == "copy_range":
                        size = max(size, dst + n)
                    line = "%s 0x%x 0x%x 0x%x 0x%x" % (name, src, ln, dst, before)
                    break
                if line is None:
                    name, line = "fsync", "fsync 0x0 0x0 0x%x" % before
        else:
            line = "fsync 0x0 0x0 0x%x" % before
        if rng.random() < 0.08:
            toks.append("close_open")
        lines.append(" ".join([line] + toks))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
