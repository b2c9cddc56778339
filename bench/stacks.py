"""
Sum py-spy's collapsed stacks (C{--format raw}) per function: the share of
samples a function is on the stack (inclusive) and on top (exclusive).

    .venv/bin/python bench/stacks.py /tmp/send.stacks [--top 40] [--under send_event]
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--under", help="only stacks through a frame containing this text")
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = [fr.split(" (")[0] + " " + fr.rsplit("/", 1)[-1].split(":")[0] for fr in stack.split(";")]
            if args.under and not any(args.under in fr for fr in frames):
                continue
            n = int(count)
            total += n
            for fr in set(frames):
                inclusive[fr] += n
            exclusive[frames[-1]] += n
    print(f"{total} samples")
    print(f"{'incl%':>6} {'excl%':>6}  function")
    for fr, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:6.1f} {100 * exclusive[fr] / total:6.1f}  {fr}")
    print("-- exclusive")
    for fr, n in exclusive.most_common(args.top):
        print(f"{100 * inclusive[fr] / total:6.1f} {100 * n / total:6.1f}  {fr}")


if __name__ == "__main__":
    main()
