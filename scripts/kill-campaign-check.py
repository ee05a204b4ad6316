#!/usr/bin/env python3
"""Counts what a kill campaign (scripts/kill-campaign.sh) lost, duplicated and reordered.

Reads the logs `parley campaign-client` wrote:
  acknowledged-SENDER.log   "SENDER RECIPIENT NUMBER MESSAGE_ID DUPLICATE" per acknowledged send
  received-RECIPIENT.log    "RECIPIENT SENDER NUMBER MESSAGE_ID" per message the application took
and its summary (the last line of its standard output, JSON). NUMBER counts 1, 2, 3, ... per
sender and recipient, and a sender sends the next only after the previous was acknowledged.

Prints the counts; exits 1 if an acknowledged message was lost, a message reached an
application twice, or a recipient got a sender's messages out of order.
"""
import glob
import json
import os
import sys


def read(pattern, fields):
    for path in sorted(glob.glob(pattern)):
        with open(path) as file:
            for number, line in enumerate(file, 1):
                parts = line.split()
                if len(parts) != fields or not all(p.isdigit() for p in parts):
                    raise SystemExit(f"{path}:{number}: unreadable line {line!r}")
                yield [int(p) for p in parts]


def main():
    if len(sys.argv) != 4:
        raise SystemExit("usage: kill-campaign-check.py LOG_DIRECTORY SUMMARY_FILE KILLS")
    logs, summary_file, kills = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(summary_file) as file:
        lines = [line for line in file if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{summary_file}: the campaign client printed no summary")
    summary = json.loads(lines[-1])

    acknowledged = {}  # (sender, recipient, number) -> message ID
    resent = 0
    for sender, recipient, number, message_id, duplicate in read(os.path.join(logs, "acknowledged-*.log"), 5):
        if acknowledged.setdefault((sender, recipient, number), message_id) != message_id:
            raise SystemExit(f"sender {sender} logged two message IDs for number {number} to {recipient}")
        resent += duplicate
    acknowledged_ids = {(s, r, i) for (s, r, _), i in acknowledged.items()}

    received = set()  # (sender, recipient, message ID)
    highest = {}  # (sender, recipient) -> highest number received
    duplicated = reordered = unacknowledged = 0
    for recipient, sender, number, message_id in read(os.path.join(logs, "received-*.log"), 4):
        key = (sender, recipient, message_id)
        expected = acknowledged.get((sender, recipient, number))
        if key in received or (expected is not None and expected != message_id):
            # The same message twice, or the same numbered body under a second ID (a sender
            # that resent with a new identity): either way the application saw it twice.
            duplicated += 1
            continue
        received.add(key)
        if expected is None:
            unacknowledged += 1
        pair = (sender, recipient)
        if number <= highest.get(pair, 0):
            reordered += 1
        else:
            highest[pair] = number
    lost = len(acknowledged_ids - received)

    print(f"kill campaign: {kills} kills of the server, {len(acknowledged_ids)} acknowledged messages, "
          f"{len(received)} received by the applications")
    print(f"  acknowledged but lost:                          {lost}")
    print(f"  duplicated at the application:                  {duplicated}")
    print(f"  reordered per sender and recipient:             {reordered}")
    print(f"  came again on the wire after acknowledgement:   {summary['hiddenRedeliveries']} "
          f"(hidden from the applications by ParleyClient)")
    print(f"  received, never acknowledged to the sender:     {unacknowledged}")
    print(f"  resent after a kill, server answered duplicate: {resent}")
    print(f"  sends failed and tried again by the sender:     {summary['sendRetries']}")
    failed = lost or duplicated or reordered or summary["missing"]
    if failed:
        print("KILL CAMPAIGN FAILED: lost, duplicated and reordered must all be 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
