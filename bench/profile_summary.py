"""Summarise a py-spy profile in raw (collapsed) format, as written by
``python -m bench --profile DIR``:

    python -m bench.profile_summary var/bench/prof/pipeline-0.txt [--focus deliver_message] [--top 25]

Prints, over the samples whose stack contains the focus frame, the share of
samples per function (inclusive: anywhere on the stack) and per leaf
(self: where the thread was). py-spy counts a thread waiting on I/O or a lock
(--idle) too, so a leaf like ``sqlite3 execute`` or ``socket recv`` is wall
time spent there, not CPU.
"""

import argparse
import collections
import re

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frames(stack):
    out = []
    for frame in stack.split(";")[1:]:  # the first "frame" is the thread
        match = _FRAME.match(frame)
        out.append(f"{match['func']} ({match['file']})" if match else frame)
    return out


def summarise(path, focus=None):
    inclusive, leaf = collections.Counter(), collections.Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _sep, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            names = frames(stack)
            if focus and not any(focus in name for name in names):
                continue
            count = int(count)
            total += count
            for name in set(names):
                inclusive[name] += count
            if names:
                leaf[names[-1]] += count
    return total, inclusive, leaf


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("path")
    parser.add_argument("--focus", default=None, help="only stacks containing a frame with this text")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    total, inclusive, leaf = summarise(args.path, args.focus)
    print(f"{total} samples{f' containing {args.focus!r}' if args.focus else ''}")
    for title, counter in (("inclusive", inclusive), ("self (leaf)", leaf)):
        print(f"\n{title}:")
        for name, count in counter.most_common(args.top):
            print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
