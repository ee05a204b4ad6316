#!/usr/bin/env python3
"""Interoperability test: the independent Python client against a running Parley server.

Usage: interop_test.py HOST PORT TLS-FINGERPRINT   (the fingerprint the server printed)

The node-link checks (sections 22 and 26.9) need the nodes run.sh starts, passed in the
environment: INTEROP_P2P_FD and INTEROP_P2P_STARTED (a `parley node` in peer-to-peer mode: the file
descriptor of its standard output and its "started" line), INTEROP_RECEIVERS ("FD:USER:INBOX" for
each `parley receive --data --files` node logged on to the server) and INTEROP_SCRATCH (a temporary
folder); without them those checks are left out (with a note).

Every check prints one line; the last line is "N passed, M failed" and the exit status is
non-zero if anything failed. Section numbers refer to docs/PROTOCOL.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import parley_client as p  # noqa: E402
import parley_node_peer as n  # noqa: E402

HOST = ""
PORT = 0
FINGERPRINT = ""
passed = 0
failed = 0
notes: list[str] = []


def check(name: str, condition: bool, detail: object = "") -> bool:
    global passed, failed
    if condition:
        passed += 1
        print(f"ok     {name}")
    else:
        failed += 1
        print(f"FAIL   {name}" + (f": {detail}" if detail != "" else ""))
    return condition


@contextmanager
def step(name: str):
    """Runs a group of checks; an unexpected exception counts as one failed check."""
    global failed
    try:
        yield
    except Exception as error:  # noqa: BLE001
        failed += 1
        print(f"FAIL   {name}: unexpected {type(error).__name__}: {error}")
        traceback.print_exc(limit=3, file=sys.stdout)


def connect() -> p.Connection:
    return p.Connection(HOST, PORT, timeout=10.0, fingerprint=FINGERPRINT)


def expect_error(name: str, answer: p.Frame, code: int, request_id: int, fatal: bool = False) -> None:
    meta = answer.fields() if answer.type == p.ERROR else {}
    check(
        name,
        answer.type == p.ERROR and meta["code"] == code and answer.request_id == request_id
        and meta["fatal"] == fatal,
        f"got {answer}",
    )


def expect_closed(name: str, conn: p.Connection) -> None:
    try:
        frame = conn.next_frame(timeout=5.0)
        check(name, False, f"got {frame} instead of the end of the connection")
    except p.ConnectionClosed:
        check(name, True)
    except TimeoutError:
        check(name, False, "the connection stayed open")


def main() -> int:
    suffix = os.urandom(4).hex()
    alice_name, bob_name = f"Alice-{suffix}", f"bob-{suffix}"
    alice_pw, bob_pw = "alice secret", "bob secret ü"

    # --- TLS (section 1.1) -----------------------------------------------------------------
    with step("TLS"):
        t = connect()
        check("TLS 1.3 is negotiated", t.sock.version() == "TLSv1.3", t.sock.version())
        check("the certificate has the fingerprint the server printed",
              t.certificate_fingerprint == p.normalize_fingerprint(FINGERPRINT), t.certificate_fingerprint)
        t.close()
        plain = p.Connection(HOST, PORT, timeout=10.0, tls=False)
        plain.send_frame(p.HELLO, 1, p.encode("Hello", {"magic": "parley", "min_version": 1, "max_version": 1}))
        refusal = plain.read_frame()
        meta = refusal.fields() if refusal.type == p.ERROR else {}
        check("a plaintext client gets a fatal PROTOCOL_VIOLATION saying TLS is required",
              refusal.type == p.ERROR and meta.get("code") == 1 and meta.get("fatal") is True
              and "TLS" in meta.get("message", ""), refusal)
        expect_closed("... and the connection closes", plain)

    # --- Handshake (section 7) ------------------------------------------------------------
    a = connect()
    with step("HELLO"):
        ok = a.hello()
        check("HELLO answered with version 1", ok["version"] == 1, ok)
        check("HELLO_OK announces max_frame_size >= 1024", ok["max_frame_size"] >= 1024, ok)
        check("HELLO_OK idle timeout is longer than the heartbeat interval",
              ok["idle_timeout_ms"] > ok["heartbeat_interval_ms"] > 0, ok)
        check("HELLO_OK server_user_id is 0", ok["server_user_id"] == 0, ok)
    max_frame = (a.hello_ok or {}).get("max_frame_size", 1 << 20)

    with step("client PING"):
        pong = a.ping(0xDEADBEEFCAFE)
        check("client PING is answered by PONG with the same nonce and request ID",
              pong.type == p.PONG and p.decode("Ping", pong.meta)["nonce"] == 0xDEADBEEFCAFE
              and pong.request_id == a.next_request_id - 1, pong)

    # --- Guest restrictions (section 8) ---------------------------------------------------
    with step("guest restrictions"):
        answer = a.request_frame(p.SEND_MESSAGE, {"message_id": 1, "recipients": [1000]}, b"x", request_id=77)
        expect_error("guest SEND_MESSAGE -> ERROR 6 NOT_LOGGED_ON, same request ID", answer, 6, 77)
        answer = a.request_frame(p.GET_USER_INFO, {"user_id": 1000}, request_id=78)
        expect_error("guest GET_USER_INFO -> ERROR 6", answer, 6, 78)
        answer = a.request_frame(p.LOGOFF, request_id=79)
        expect_error("guest LOGOFF -> ERROR 6", answer, 6, 79)
        # Section 21: a failing request with request ID 0 still yields a non-fatal ERROR with ID 0.
        a.ack([(1000, 1)], request_id=0)
        a.ping(1)
        errors = [f for f in a.events if f.type == p.ERROR]
        check("guest ACK_MESSAGES with request ID 0 -> non-fatal ERROR 6 with request ID 0",
              len(errors) == 1 and errors[0].request_id == 0 and errors[0].fields()["code"] == 6
              and not errors[0].fields()["fatal"], [str(f) for f in a.events])
        a.events.clear()
        check("guest USER_EXISTS is allowed (unknown ID -> false)", a.user_exists(0) is False)

    # --- Accounts (section 9.1-9.3) -------------------------------------------------------
    bob = alice = 0
    with step("register"):
        reg = a.register(f"  {bob_name}\t", bob_pw, first_name="Bob", organization="Interop")
        bob = reg["user"]["user_id"]
        check("REGISTER assigns an ID and logs on (online, trimmed name, no stored messages)",
              bob >= 1 and reg["user"]["online"] and reg["user"]["user_name"] == bob_name
              and reg["stored_messages"] == 0 and reg["user"]["registered_at_ms"] > 1_600_000_000_000, reg)
        answer = a.request_frame(p.REGISTER, {"info": {"user_name": "x"}, "password": "y"}, request_id=90)
        expect_error("REGISTER while logged on -> ERROR 7 ALREADY_LOGGED_ON", answer, 7, 90)
        a.logoff()
        check("LOGOFF returns to guest (GET_USER_INFO -> 6 again)",
              a.request_frame(p.GET_USER_INFO, {"user_id": bob}).fields()["code"] == 6)
        answer = a.request_frame(p.REGISTER, {"info": {"user_name": "   "}, "password": "y"}, request_id=91)
        expect_error("REGISTER with a blank user name -> ERROR 5 INVALID_REQUEST", answer, 5, 91)
        reg = a.register(alice_name, alice_pw, organization="Interop Labs")
        alice = reg["user"]["user_id"]
        check("second REGISTER on the same connection after LOGOFF", alice > bob, reg)

    # --- Directory (section 9.4-9.8) ------------------------------------------------------
    with step("directory"):
        check("USER_EXISTS(bob) is true", a.user_exists(bob))
        check("USER_ONLINE(bob) is false while bob is offline", a.user_online(bob) is False)
        info = a.user_info(alice)
        check("GET_USER_INFO(alice) is online with her fields",
              info["online"] and info["organization"] == "Interop Labs" and info["user_id"] == alice, info)
        answer = a.request_frame(p.GET_USER_INFO, {"user_id": 4_000_000_000}, request_id=95)
        expect_error("GET_USER_INFO of an unknown ID -> ERROR 20 USER_NOT_FOUND", answer, 20, 95)
        check("FIND_USER_ID is exact and case-insensitive",
              a.find_user_ids(alice_name.upper()) == [alice] and a.find_user_ids(alice_name[:-1]) == [])
        found = a.find_users([(p.USER_FIELD_USER_NAME, p.MATCH_CONTAINS, suffix.upper()),
                              (p.USER_FIELD_ORGANIZATION, p.MATCH_PREFIX, "INTEROP")],
                             sort=p.USER_FIELD_USER_NAME)
        check("FIND_USERS: contains + prefix, case-insensitive, AND, sorted by user name",
              [u["user_id"] for u in found["users"]] == [alice, bob] and not found["truncated"], found)
        found = a.find_users([(p.USER_FIELD_USER_NAME, p.MATCH_CONTAINS, suffix)], online=p.ONLINE_ONLINE)
        check("FIND_USERS online filter", [u["user_id"] for u in found["users"]] == [alice], found)
        found = a.find_users([(p.USER_FIELD_USER_NAME, p.MATCH_CONTAINS, suffix)], limit=1)
        check("FIND_USERS limit and truncated", len(found["users"]) == 1 and found["truncated"], found)
        answer = a.request_frame(p.FIND_USERS, {"filters": [{"field": p.USER_FIELD_USER_ID, "value": "1"}]},
                                 request_id=96)
        expect_error("FIND_USERS on the user ID field -> ERROR 5", answer, 5, 96)

    # --- Strict decoding and size limits (sections 4, 9.8, 17.4) ---------------------------
    with step("strict decoding"):
        answer = a.request_frame(p.SEND_MESSAGE, {"message_id": 7, "recipients": [2**32 + bob]}, b"x",
                                 request_id=120)
        expect_error("SEND_MESSAGE to recipient 2^32 + bob -> ERROR 5, not delivered to bob", answer, 5, 120)
        a.send_frame(p.USER_EXISTS, 121, bytes([0x0A, 0x01, 0x07]))
        expect_error("USER_EXISTS with user_id sent as LEN (wrong wire type) -> ERROR 5", a.wait_answer(121), 5, 121)
        answer = a.request_frame(p.FIND_USERS, {"filters": [{"field": p.USER_FIELD_USER_NAME, "match": p.MATCH_CONTAINS,
                                                             "value": "a" * 257}]}, request_id=122)
        expect_error("FIND_USERS with a 257-byte value -> ERROR 5", answer, 5, 122)
        g = connect()
        g.hello()
        answer = g.request_frame(p.REGISTER, {"info": {"user_name": "e" + "\u0301" * 300}, "password": "pw"},
                                 request_id=123)
        expect_error("REGISTER with a one-character name of 601 bytes -> ERROR 5", answer, 5, 123)
        g.close()

    # --- Node keys (section 17.5) ---------------------------------------------------------
    with step("node keys"):
        # The P-256 key of the worked example in section 17.5 (the generator point), as the
        # 91-byte DER SubjectPublicKeyInfo; its node ID is computed here from the bytes.
        key = bytes.fromhex(
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
        node_id = base64.b32encode(hashlib.sha256(key).digest()).decode("ascii").rstrip("=").lower()
        addresses = ["192.0.2.7:7421", "[2001:db8::7]:7421"]
        n = connect()
        n.hello()
        node_pw = "node secret"
        node_user = n.register(f"node-{os.urandom(4).hex()}", node_pw)["user"]["user_id"]
        n.logoff()
        answer = n.request_frame(p.LOGON, {"user_id": node_user, "password": node_pw, "node_public_key": key,
                                           "node_id": node_id.upper()}, request_id=99)
        expect_error("LOGON with a node_id that is not the key's lowercase base32 SHA-256 -> ERROR 5",
                     answer, 5, 99)
        logon = n.request(p.LOGON, {"user_id": node_user, "password": node_pw, "node_public_key": key,
                                    "node_id": node_id, "direct_addresses": addresses, "allow_direct": True})
        info = a.user_info(node_user)
        check("LOGON with a node key: GET_USER_INFO returns the key, node ID, addresses and consent",
              len(node_id) == 52 and info["node_public_key"] == key and info["node_id"] == node_id
              and info["direct_addresses"] == addresses and info["allow_direct"]
              and info["node_key_updated_at_ms"] == logon["user"]["node_key_updated_at_ms"] > 1_600_000_000_000,
              info)
        # Section 9.2: a logon declaring another node (or none) gets SESSION_EXISTS and records
        # nothing; one declaring the same node takes the (stale) session over.
        m = connect()
        m.hello()
        answer = m.request_frame(p.LOGON, {"user_id": node_user, "password": node_pw}, request_id=100)
        expect_error("LOGON of a logged-on user without its node -> ERROR 12 SESSION_EXISTS", answer, 12, 100)
        check("a refused LOGON leaves the recorded node as it was",
              a.user_info(node_user)["node_key_updated_at_ms"] == info["node_key_updated_at_ms"])
        takeover = m.request(p.LOGON, {"user_id": node_user, "password": node_pw, "node_public_key": key,
                                       "node_id": node_id})
        check("LOGON declaring the same node as the existing session takes it over",
              takeover["user"]["user_id"] == node_user and takeover["user"]["online"], takeover)
        replaced = n.next_event(types=(p.SESSION_REPLACED,))
        check("the stale session gets SESSION_REPLACED naming the same node",
              "same node" in replaced.fields()["reason"], replaced)
        fatal = n.next_event(types=(p.ERROR,))
        check("... then a fatal ERROR 13", fatal.fields()["code"] == 13 and fatal.fields()["fatal"], fatal)
        expect_closed("... and the stale session is closed", n)
        m.close()
        n.close()

    # --- Messages to an offline recipient (section 11) ------------------------------------
    texts = ["hello bob 👋", "second", "third: ordering"]
    text_ids = []
    with step("send while offline"):
        for text in texts:
            message_id, results = a.send_message([bob], text)
            text_ids.append(message_id)
            check(f"SEND_MESSAGE {text!r} to offline bob -> ACCEPTED_OFFLINE",
                  len(results) == 1 and results[0]["recipient"] == bob
                  and results[0]["status"] == p.ACCEPTED_OFFLINE and not results[0]["duplicate"], results)
        _, results = a.send_message([4_000_000_000], "nobody")
        check("unknown recipient -> FAILED with error_code 32",
              results[0]["status"] == p.FAILED and results[0]["error_code"] == 32, results)
        answer = a.request_frame(p.SEND_MESSAGE, {"message_id": 5, "recipients": [bob], "kind": p.KIND_TEXT},
                                 b"\xff\xfe bad", request_id=97)
        expect_error("TEXT payload that is not UTF-8 -> ERROR 30 INVALID_UTF8", answer, 30, 97)
        answer = a.request_frame(p.SEND_MESSAGE, {"message_id": 0, "recipients": [bob]}, b"", request_id=98)
        expect_error("message ID 0 -> ERROR 5", answer, 5, 98)

    # --- Bob logs on in a second connection and gets the stored messages (11.4, 11.5) -----
    b = connect()
    inbox = p.Inbox()
    with step("bob logs on"):
        b.hello()
        start = time.monotonic()
        answer = b.request_frame(p.LOGON, {"user_id": bob, "password": "wrong"}, request_id=5)
        expect_error("LOGON with a wrong password -> ERROR 10 INVALID_CREDENTIALS", answer, 10, 5)
        check("a failed LOGON is answered after a pause (~100 ms)", time.monotonic() - start >= 0.09)
        logon = b.logon(bob, bob_pw)
        check("LOGON reports 3 stored messages", logon["stored_messages"] == 3, logon)
        received = [b.next_event(types=(p.MESSAGE,)) for _ in texts]
        metas = [m.fields() for m in received]
        check("stored MESSAGE events arrive oldest first, from alice, as TEXT, with the right bodies",
              [m.payload.decode("utf-8") for m in received] == texts
              and [m["message_id"] for m in metas] == text_ids
              and all(m["sender"] == alice and m["kind"] == p.KIND_TEXT and m["recipients"] == [bob]
                      and m["stored_at_ms"] > 0 and m["delivered_at_ms"] >= m["stored_at_ms"] for m in metas),
              [str(m) for m in received])
        for m in metas:
            inbox.is_new(m["sender"], m["message_id"])
        ack = b.ack([(alice, text_ids[0])], request_id=6)
        check("ACK_MESSAGES with a request ID is answered by an empty 0x8031",
              ack is not None and ack.type == p.ACK_MESSAGES | p.RESPONSE_BIT and ack.meta == b"", ack)
        b.ack([(alice, i) for i in text_ids[1:]], request_id=0)
        b.ping(2)
        check("ACK_MESSAGES with request ID 0 gets no answer",
              not any(f.type == p.ACK_MESSAGES | p.RESPONSE_BIT or f.type == p.ERROR for f in b.events)
              and not b.answers, [str(f) for f in b.events])
        answer = b.request_frame(p.LOGON, {"user_id": bob, "password": bob_pw}, request_id=7)
        expect_error("LOGON while logged on -> ERROR 7", answer, 7, 7)
        c = connect()
        c.hello()
        answer = c.request_frame(p.LOGON, {"user_id": bob, "password": bob_pw}, request_id=8)
        expect_error("LOGON of a user logged on elsewhere -> ERROR 12 SESSION_EXISTS", answer, 12, 8)
        c.close()
        check("USER_ONLINE(bob) is true now", a.user_online(bob))

    # --- Binary message while online, receipt, duplicate (9.11, 10.2, 11.3) ----------------
    with step("binary message online"):
        body = bytes(range(256)) + b"\x00\x00\xff"
        message_id, results = a.send_message([bob, bob], body, want_receipt=True)
        check("binary SEND_MESSAGE to online bob -> one ACCEPTED_ONLINE (duplicate recipient dropped)",
              len(results) == 1 and results[0]["status"] == p.ACCEPTED_ONLINE, results)
        event = b.next_event(types=(p.MESSAGE,))
        meta = event.fields()
        check("bob receives the binary MESSAGE intact",
              meta["kind"] == p.KIND_BINARY and event.payload == body and meta["message_id"] == message_id
              and meta["sender"] == alice, event)
        inbox.is_new(alice, message_id)
        b.ack([(alice, message_id)])
        receipt = a.next_event(types=(p.DELIVERY_RECEIPT,))
        rmeta = receipt.fields()
        check("alice receives a DELIVERY_RECEIPT after bob's ACK",
              rmeta["message_id"] == message_id and rmeta["recipient"] == bob
              and rmeta["acknowledged_at_ms"] > 0 and receipt.request_id == 0, receipt)
        _, results = a.send_message([bob], body, message_id=message_id)
        check("resending the same message ID -> accepted with duplicate = true",
              results[0]["status"] in (p.ACCEPTED_ONLINE, p.ACCEPTED_OFFLINE) and results[0]["duplicate"], results)
        try:
            extra = b.next_event(timeout=0.5, types=(p.MESSAGE,))
            check("the duplicate is not delivered again", False, extra)
        except TimeoutError:
            check("the duplicate is not delivered again", True)

    # --- Redelivery after reconnect + client-side de-duplication (11.6) --------------------
    with step("redelivery"):
        message_id, results = a.send_message([bob], "not acknowledged")
        event = b.next_event(types=(p.MESSAGE,))
        check("bob receives a live TEXT message", event.payload == b"not acknowledged")
        check("the inbox sees it as new", inbox.is_new(alice, message_id))
        b.close()  # without acknowledging it
        b = connect()
        b.hello()
        logon = b.logon(bob, bob_pw)
        event = b.next_event(types=(p.MESSAGE,))
        check("after reconnecting, the unacknowledged message is pushed again",
              logon["stored_messages"] == 1 and event.fields()["message_id"] == message_id, (logon, event))
        check("client-side de-duplication recognizes the redelivery",
              not inbox.is_new(event.fields()["sender"], event.fields()["message_id"]))
        b.ack([(alice, message_id)])
        b.logoff()
        b.logon(bob, bob_pw)
        b.ping(3)
        check("after the ACK nothing is pushed at the next logon",
              not [f for f in b.events if f.type == p.MESSAGE], [str(f) for f in b.events])

    # --- Largest frame (2.1, 21) -----------------------------------------------------------
    with step("largest frame"):
        meta = p.encode("SendMessageRequest", {"message_id": 0x1234567890, "recipients": [bob],
                                               "kind": p.KIND_BINARY, "sent_at_ms": int(time.time() * 1000)})
        big = os.urandom(max_frame - 12 - len(meta))
        a.send_frame(p.SEND_MESSAGE, 500, meta, big)
        answer = a.wait_answer(500)
        check("a SEND_MESSAGE frame of exactly max_frame_size bytes is accepted",
              answer.type == p.SEND_MESSAGE | p.RESPONSE_BIT
              and answer.fields()["results"][0]["status"] == p.ACCEPTED_ONLINE, answer)
        event = b.next_event(types=(p.MESSAGE,))
        check("and delivered intact", event.payload == big)
        if event.length > max_frame:
            notes.append(f"the MESSAGE frame carrying it is {event.length} bytes, "
                         f"{event.length - max_frame} over max_frame_size (PROTOCOL.md section 21)")
        b.ack([(alice, 0x1234567890)])

    # --- Unknown frame type and misuse (section 6, 8) -------------------------------------
    with step("unknown frame type"):
        a.send_frame(0x0777, 4242, b"\x08\x01", b"payload")
        expect_error("unknown frame type -> ERROR 4 UNKNOWN_REQUEST with the same request ID",
                     a.wait_answer(4242), 4, 4242)
        a.send_frame(p.HELLO | p.RESPONSE_BIT, 4243)
        expect_error("a response-type frame from the client -> ERROR 5", a.wait_answer(4243), 5, 4243)
        a.send_frame(p.HELLO, 4244, p.encode("Hello", {"magic": "parley", "min_version": 1, "max_version": 1}))
        expect_error("a second HELLO -> ERROR 5", a.wait_answer(4244), 5, 4244)
        check("the connection still works afterwards", a.ping(4).type == p.PONG)

    # --- Handshake failures (section 7) ---------------------------------------------------
    with step("handshake failures"):
        c = connect()
        pong = c.ping(5)
        check("PING before HELLO is answered", pong.type == p.PONG)
        c.send_frame(p.USER_EXISTS, 9, p.encode("UserIdRequest", {"user_id": 1}))
        expect_error("first frame not HELLO -> fatal ERROR 8 with request ID 0", c.next_frame(), 8, 0, fatal=True)
        expect_closed("... and the connection is closed", c)
        c.close()
        c = connect()
        c.send_frame(p.HELLO, 1, p.encode("Hello", {"magic": "parley", "min_version": 2, "max_version": 3}))
        expect_error("HELLO without a common version -> fatal ERROR 3", c.next_frame(), 3, 0, fatal=True)
        expect_closed("... and the connection is closed", c)
        c.close()
        c = connect()
        c.send_frame(p.HELLO, 1, p.encode("Hello", {"magic": "Parley", "min_version": 1, "max_version": 1}))
        expect_error("HELLO with a wrong magic -> fatal ERROR 1", c.next_frame(), 1, 0, fatal=True)
        c.close()
        c = connect()
        c.send_frame(p.HELLO, 1, b"\x0a\x09parley")  # string field longer than the meta section
        expect_error("HELLO with an unreadable meta section -> fatal ERROR 5", c.next_frame(), 5, 0, fatal=True)
        c.close()

    # --- Resumption tokens (section 9.2.1) -----------------------------------------------
    with step("resumption tokens"):
        r = connect()
        r.hello()
        dave_pw = "dave secret"
        registered = r.register(f"dave-{suffix}", dave_pw)
        dave = registered["user"]["user_id"]
        first = registered.get("resumption_token", "")
        check("REGISTER answers with a 43-character base64url resumption token and a future expiry",
              len(first) == 43 and all(ch.isalnum() or ch in "-_" for ch in first)
              and registered.get("resumption_token_expires_at_ms", 0) > time.time() * 1000, registered)
        r.close()
        r = connect()
        r.hello()
        resumed = r.request(p.LOGON, {"user_id": dave, "resumption_token": first})
        second = resumed.get("resumption_token", "")
        check("LOGON with the token and no password logs on and rotates the token",
              resumed["user"]["user_id"] == dave and len(second) == 43 and second != first, resumed)
        r.close()
        r = connect()
        r.hello()
        answer = r.request_frame(p.LOGON, {"user_id": dave, "resumption_token": first}, request_id=40)
        expect_error("the used token again -> ERROR 10 INVALID_CREDENTIALS", answer, 10, 40)
        answer = r.request_frame(p.LOGON, {"user_id": dave, "resumption_token": "x" * 43}, request_id=41)
        expect_error("a made-up token -> ERROR 10 INVALID_CREDENTIALS", answer, 10, 41)
        answer = r.request_frame(p.LOGON, {"user_id": dave, "password": dave_pw, "resumption_token": second},
                                 request_id=42)
        expect_error("a password and a token -> ERROR 5 INVALID_REQUEST", answer, 5, 42)
        check("the rotated token still logs on",
              r.request(p.LOGON, {"user_id": dave, "resumption_token": second})["user"]["user_id"] == dave)
        r.logoff()
        r.close()

    # --- Framing errors (section 2.1, 2.2) ------------------------------------------------
    with step("oversized frame"):
        c = connect()
        c.hello()
        # Only the header of a frame one byte over the limit: the server must not wait for the rest.
        c.send_raw(struct.pack(">I", max_frame + 1) + p.HEADER.pack(p.SEND_MESSAGE, 0, 11, 0))
        expect_error("length field over max_frame_size -> fatal ERROR 2 FRAME_TOO_LARGE, request ID 0",
                     c.next_frame(), 2, 0, fatal=True)
        expect_closed("... and the connection is closed", c)
        c.close()
        c = connect()
        c.hello()
        c.send_raw(struct.pack(">I", 11) + b"\x00" * 11)
        expect_error("length field under 12 -> fatal ERROR 1", c.next_frame(), 1, 0, fatal=True)
        c.close()
        c = connect()
        c.hello()
        c.send_raw(struct.pack(">I", 14) + p.HEADER.pack(p.USER_EXISTS, 0, 12, 3) + b"\x08\x01")
        expect_error("meta length beyond the frame -> fatal ERROR 1", c.next_frame(), 1, 0, fatal=True)
        c.close()

    # --- Keep-alive (section 12) ----------------------------------------------------------
    # Server PINGs are answered automatically by Connection.next_frame. The server only PINGs a
    # connection after heartbeat_interval_ms of silence (30 s by default), so waiting for one is
    # opt-in: INTEROP_WAIT_FOR_SERVER_PING=1.
    if os.environ.get("INTEROP_WAIT_FOR_SERVER_PING") == "1":
        with step("server PING"):
            interval = (a.hello_ok or {}).get("heartbeat_interval_ms", 30_000) / 1000
            frame = a.read_frame(timeout=interval + 5)
            check("the server PINGs a quiet connection with request ID 0 and a nonce",
                  frame.type == p.PING and frame.request_id == 0 and p.decode("Ping", frame.meta)["nonce"] > 0, frame)
            a.send_frame(p.PONG, 0, p.encode("Ping", {"nonce": p.decode("Ping", frame.meta)["nonce"]}))
            check("the connection still works after our PONG", a.user_exists(alice))
    # --- Contacts and presence (section 23) ------------------------------------------------
    with step("contacts and presence"):
        w = connect()
        ok = w.hello(capabilities=["presence", "some-future-feature"])
        check("HELLO_OK lists the presence capability, and only the known ones we asked for",
              ok["capabilities"] == ["presence"], ok)
        watcher = w.register(f"watcher-{suffix}", "pw")["user"]["user_id"]
        snapshot = w.next_event(types=(p.PRESENCE,)).fields()
        check("a PRESENCE snapshot with the (empty) contact list follows the logon answer",
              snapshot["snapshot"] is True and snapshot["contacts"]["contacts"] == []
              and snapshot["contacts"]["maximum"] >= 1, snapshot)
        t = connect()
        t.hello()
        target = t.register(f"target-{suffix}", "pw", first_name="Tim")["user"]["user_id"]
        contact = w.add_contact(target, p.DISPLAY_FIRST_NAME)
        check("ADD_CONTACT answers the entry with the contact's directory record",
              contact["user_id"] == target and contact["display_rule"] == p.DISPLAY_FIRST_NAME
              and contact["user"]["first_name"] == "Tim" and contact["added_at_ms"] > 0, contact)
        first = w.next_event(types=(p.PRESENCE,)).fields()
        check("... followed by the new contact's presence (ONLINE)",
              not first["snapshot"] and [(i["user_id"], i["state"]) for i in first["presences"]]
              == [(target, p.PRESENCE_ONLINE)], first)
        t.set_presence(p.PRESENCE_BUSY, "in a meeting")
        busy = w.next_event(types=(p.PRESENCE,)).fields()
        check("SET_PRESENCE is pushed to the watcher with its text",
              [(i["user_id"], i["state"], i["text"]) for i in busy["presences"]]
              == [(target, p.PRESENCE_BUSY, "in a meeting")], busy)
        for name, values, code in [
            ("SET_PRESENCE OFFLINE -> INVALID_PRESENCE", {"state": p.PRESENCE_OFFLINE}, 72),
            ("SET_PRESENCE with 257 bytes of text -> INVALID_PRESENCE",
             {"state": p.PRESENCE_AWAY, "text": "x" * 257}, 72),
        ]:
            answer = t.request_frame(p.SET_PRESENCE, values)
            expect_error(name, answer, code, answer.request_id)
        answer = w.request_frame(p.ADD_CONTACT, {"user_id": 0xFFFFFFF0})
        expect_error("ADD_CONTACT of an unknown user -> USER_NOT_FOUND", answer, 20, answer.request_id)
        answer = w.request_frame(p.REMOVE_CONTACT, {"user_id": watcher})
        expect_error("REMOVE_CONTACT of a non-contact -> CONTACT_NOT_FOUND", answer, 70, answer.request_id)
        listed = w.get_contacts()
        check("GET_CONTACTS lists the entry", [c["user_id"] for c in listed["contacts"]] == [target], listed)
        t.close()
        offline = w.next_event(types=(p.PRESENCE,)).fields()
        check("a closed connection shows OFFLINE to the watcher",
              [(i["user_id"], i["state"]) for i in offline["presences"]] == [(target, p.PRESENCE_OFFLINE)], offline)
        w.remove_contact(target)
        check("REMOVE_CONTACT empties the list", w.get_contacts()["contacts"] == [])
        w.close()

    # --- Custom commands (section 24) --------------------------------------------------------
    with step("custom commands"):
        caller = connect()
        ok = caller.hello(capabilities=["commands"])
        check("HELLO_OK lists the commands capability", ok["capabilities"] == ["commands"], ok)
        answer = caller.request_frame(p.SEND_COMMAND, {"name": "time"}, request_id=90)
        expect_error("guest SEND_COMMAND -> ERROR 6 NOT_LOGGED_ON", answer, 6, 90)
        caller_id = caller.register(f"caller-{suffix}", "pw")["user"]["user_id"]
        callee = connect()
        callee.hello(capabilities=["commands"])
        callee_pw = "pw"
        callee_id = callee.register(f"callee-{suffix}", callee_pw)["user"]["user_id"]

        answer = caller.request_frame(p.SEND_COMMAND, {"name": "time"})
        expect_error("a command to the server without a handler -> NO_HANDLER", answer, 80, answer.request_id)
        answer = caller.request_frame(p.SEND_COMMAND, {"name": ""})
        expect_error("an empty command name -> INVALID_REQUEST", answer, 5, answer.request_id)
        answer = caller.request_frame(p.SEND_COMMAND, {"name": "x" * 129, "recipient": callee_id})
        expect_error("a 129-byte command name -> INVALID_REQUEST", answer, 5, answer.request_id)
        answer = caller.request_frame(p.SEND_COMMAND, {"name": "ping", "recipient": 0xFFFFFFF0})
        expect_error("a command to a user who is not logged on -> RECIPIENT_OFFLINE", answer, 82, answer.request_id)

        def start_command(name: str, payload: bytes, timeout_ms: int) -> int:
            request_id = caller.new_request_id()
            caller.send_frame(p.SEND_COMMAND, request_id, p.encode("CommandRequest", {
                "name": name, "recipient": callee_id, "timeout_ms": timeout_ms}), payload)
            return request_id

        request_id = start_command("ping", b"\x00hi", 5000)
        event = callee.next_event(types=(p.COMMAND,))
        meta = event.fields()
        check("the recipient gets COMMAND with the name, sender, timeout, an ID and the payload",
              meta["name"] == "ping" and meta["sender"] == caller_id and meta["timeout_ms"] == 5000
              and meta["command_id"] > 0 and not meta["fire_and_forget"] and event.payload == b"\x00hi", meta)
        reply = callee.reply_command(meta["command_id"], b"pong")
        check("COMMAND_REPLY is answered COMMAND_REPLY_OK", reply.type == p.COMMAND_REPLY | p.RESPONSE_BIT, reply)
        answer = caller.wait_answer(request_id)
        check("the caller gets SEND_COMMAND_OK (REPLIED) with the reply as payload",
              answer.type == p.SEND_COMMAND | p.RESPONSE_BIT and answer.fields()["disposition"] == p.COMMAND_REPLIED
              and answer.payload == b"pong", answer)

        request_id = start_command("print", b"", 5000)
        command_id = callee.next_event(types=(p.COMMAND,)).fields()["command_id"]
        callee.reply_command(command_id, error_code=81, application_code=42, text="out of paper")
        answer = caller.wait_answer(request_id)
        failed_meta = answer.fields() if answer.type == p.ERROR else {}
        check("a failed handler -> ERROR COMMAND_FAILED with the application's code and text",
              failed_meta.get("code") == 81 and failed_meta.get("application_code") == 42
              and failed_meta.get("message") == "out of paper", answer)

        request_id = start_command("unknown", b"", 5000)
        command_id = callee.next_event(types=(p.COMMAND,)).fields()["command_id"]
        callee.reply_command(command_id, error_code=80, text="no handler")
        expect_error("a NO_HANDLER reply -> ERROR NO_HANDLER", caller.wait_answer(request_id), 80, request_id)

        started = time.monotonic()
        request_id = start_command("slow", b"", 300)
        command_id = callee.next_event(types=(p.COMMAND,)).fields()["command_id"]
        answer = caller.wait_answer(request_id)
        waited = time.monotonic() - started
        expect_error("no reply within timeout_ms -> ERROR COMMAND_TIMED_OUT", answer, 83, request_id)
        check("... after about the timeout", 0.25 <= waited < 5, waited)
        late = callee.reply_command(command_id, b"too late")
        expect_error("the late reply -> ERROR COMMAND_NOT_PENDING", late, 84, late.request_id)

        disposition, _ = caller.send_command("note", b"n", recipient=callee_id, fire_and_forget=True)
        check("a fire-and-forget command is answered DELIVERED", disposition == p.COMMAND_DELIVERED, disposition)
        note = callee.next_event(types=(p.COMMAND,)).fields()
        check("... and arrives with command_id 0 and fire_and_forget set",
              note["command_id"] == 0 and note["fire_and_forget"] and note["name"] == "note", note)

        answer = caller.request_frame(p.SEND_COMMAND, {"name": "x", "recipient": callee_id,
                                                       "store_if_offline": True})
        expect_error("store_if_offline without fire_and_forget -> INVALID_REQUEST", answer, 5, answer.request_id)
        callee.close()
        # The server sees the closed connection at once, or answers RECIPIENT_OFFLINE when it
        # pushes the command to a connection that turns out to be gone: either way it is stored.
        disposition, _ = caller.send_command("wake", b"w", recipient=callee_id, fire_and_forget=True,
                                             store_if_offline=True)
        if disposition != p.COMMAND_STORED:
            notes.append(f"the first stored command was answered {disposition} (the close was not seen yet)")
            disposition, _ = caller.send_command("wake", b"w", recipient=callee_id, fire_and_forget=True,
                                                 store_if_offline=True)
        check("with store_if_offline a command to an offline user is answered STORED",
              disposition == p.COMMAND_STORED, disposition)
        callee = connect()
        callee.hello(capabilities=["commands"])
        callee.logon(callee_id, callee_pw)
        stored = callee.next_event(types=(p.COMMAND,))
        check("... and pushed at the recipient's next logon",
              stored.fields()["name"] == "wake" and stored.fields()["fire_and_forget"] and stored.payload == b"w",
              stored)
        caller.close()
        callee.close()

    # --- Message history (section 25; run.sh starts the server with --history-days) ----------
    with step("message history"):
        h1 = connect()
        ok = h1.hello(capabilities=["history"])
        check("HELLO_OK lists the history capability", ok["capabilities"] == ["history"], ok)
        answer = h1.request_frame(p.SEARCH_HISTORY, {}, request_id=95)
        expect_error("guest SEARCH_HISTORY -> ERROR 6 NOT_LOGGED_ON", answer, 6, 95)
        writer_id = h1.register(f"historian-{suffix}", "pw")["user"]["user_id"]
        h2 = connect()
        h2.hello()
        reader_id = h2.register(f"reader-{suffix}", "pw")["user"]["user_id"]
        h3 = connect()
        h3.hello()
        h3.register(f"outsider-{suffix}", "pw")
        sent = []
        for text in ("Your INVOICE for March", "lunch at noon?", "the invoice, again", "Café Über"):
            message_id, results = h1.send_message([reader_id], text, want_receipt=True)
            sent.append(message_id)
        received = [h2.next_event(types=(p.MESSAGE,)) for _ in sent]
        h2.ack([(writer_id, e.fields()["message_id"]) for e in received[:2]])
        # The receipts come once the acknowledgements are recorded (and so in the history).
        receipts = {h1.next_event(types=(p.DELIVERY_RECEIPT,)).fields()["message_id"] for _ in range(2)}
        check("the first two messages are acknowledged", receipts == set(sent[:2]), receipts)
        page = h1.search_history(conversation_with=[reader_id], text="invoice")
        check("contains (case-insensitive) finds the two messages with the word, newest first",
              [e["message_id"] for e in page["entries"]] == [sent[2], sent[0]] and page["next_cursor"] == "", page)
        first = page["entries"][-1] if page["entries"] else {}
        check("an entry carries sender, recipient, kind TEXT, body and the delivery time",
              first.get("sender") == writer_id and first.get("recipient") == reader_id
              and first.get("kind") == p.HISTORY_KIND_TEXT and first.get("body") == b"Your INVOICE for March"
              and first.get("delivered_at_ms", 0) > 0, first)
        page = h2.search_history(text="cafe uber", text_match=p.TEXT_MATCH_CONTAINS)
        check("diacritics are ignored", [e["message_id"] for e in page["entries"]] == [sent[3]], page)
        page = h2.search_history(text="LUNCH AT", text_match=p.TEXT_MATCH_PREFIX)
        check("prefix", [e["message_id"] for e in page["entries"]] == [sent[1]], page)
        page = h2.search_history(delivery=p.DELIVERY_FILTER_UNDELIVERED, oldest_first=True)
        check("undelivered, oldest first", [e["message_id"] for e in page["entries"]] == sent[2:], page)
        seen, cursor = [], ""
        for _ in range(5):
            page = h2.search_history(limit=3, cursor=cursor)
            seen += [e["message_id"] for e in page["entries"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        check("paging with the cursor, 3 at a time, gives every entry once, newest first",
              seen == list(reversed(sent)), seen)
        page = h3.search_history(conversation_with=[reader_id])
        check("another user's conversation is not visible", page["entries"] == [], page)
        answer = h2.request_frame(p.SEARCH_HISTORY, {"cursor": "forged"})
        expect_error("a forged cursor -> INVALID_HISTORY_CURSOR", answer, 91, answer.request_id)
        answer = h2.request_frame(p.SEARCH_HISTORY, {"text": "x" * 1025})
        expect_error("a 1,025-byte text -> INVALID_REQUEST", answer, 5, answer.request_id)
        for connection in (h1, h2, h3):
            connection.close()

    # --- File and stream transfer (section 26) ------------------------------------------------
    with step("file transfer"):
        sender = connect()
        ok = sender.hello(capabilities=["files"])
        check("HELLO_OK lists the files capability", ok["capabilities"] == ["files"], ok)
        answer = sender.request_frame(p.TRANSFER_START, {"transfer_id": 1, "recipient": 1, "name": "x", "size": 1})
        expect_error("guest TRANSFER_START -> ERROR 6 NOT_LOGGED_ON", answer, 6, answer.request_id)
        sender_id = sender.register(f"filesender-{suffix}", "pw")["user"]["user_id"]
        receiver = connect()
        receiver.hello(capabilities=["files"])
        receiver_id = receiver.register(f"filereceiver-{suffix}", "pw")["user"]["user_id"]
        body = bytes(range(256)) * 1200 + b"tail"  # 307,204 bytes: two chunks of the default size
        digest = hashlib.sha256(body).digest()

        answer = sender.request_frame(p.TRANSFER_START, {"transfer_id": 7, "recipient": receiver_id,
                                                         "name": "../etc/passwd", "size": 10})
        expect_error("a name with a path separator -> INVALID_FILE_NAME", answer, 106, answer.request_id)
        state = sender.request(p.TRANSFER_START, {"transfer_id": 7, "recipient": receiver_id, "name": "data.bin",
                                                  "size": len(body)})
        chunk = state["chunk_size"]
        check("TRANSFER_START answers offset 0, UPLOADING, and a chunk size",
              state["offset"] == 0 and state["phase"] == p.UPLOADING and 1024 <= chunk, state)
        answer = sender.request_frame(p.TRANSFER_CHUNK, {"transfer_id": 7, "offset": 5}, b"abc")
        expect_error("a chunk at the wrong offset -> TRANSFER_OFFSET_MISMATCH", answer, 103, answer.request_id)
        state = sender.request(p.TRANSFER_CHUNK, {"transfer_id": 7, "offset": 0}, body[:chunk])
        check("TRANSFER_CHUNK answers the new offset", state["offset"] == chunk, state)
        state = sender.request(p.TRANSFER_START, {"transfer_id": 7, "recipient": receiver_id, "name": "data.bin",
                                                  "size": len(body)})
        check("TRANSFER_START again (a resume) answers the server's offset", state["offset"] == chunk, state)
        state = sender.request(p.TRANSFER_CHUNK, {"transfer_id": 7, "offset": chunk}, body[chunk:])
        answer = sender.request_frame(p.TRANSFER_END, {"transfer_id": 7, "size": len(body), "sha256": b"\0" * 32})
        expect_error("TRANSFER_END with a wrong hash -> TRANSFER_HASH_MISMATCH", answer, 104, answer.request_id)
        state = sender.request(p.TRANSFER_START, {"transfer_id": 7, "recipient": receiver_id, "name": "data.bin",
                                                  "size": len(body)})
        check("... and the server discarded the bytes (offset 0)", state["offset"] == 0, state)
        for offset in range(0, len(body), chunk):
            sender.request(p.TRANSFER_CHUNK, {"transfer_id": 7, "offset": offset}, body[offset:offset + chunk])
        state = sender.request(p.TRANSFER_END, {"transfer_id": 7, "size": len(body), "sha256": digest})
        check("TRANSFER_END with the right hash answers READY", state["phase"] == p.READY, state)

        offer = receiver.next_event(types=(p.TRANSFER_OFFER,)).fields()
        check("the recipient gets TRANSFER_OFFER with the name, size, sender and hash",
              offer["name"] == "data.bin" and offer["size"] == len(body) and offer["sender"] == sender_id
              and offer["sha256"] == digest and offer["phase"] == p.READY, offer)
        received = b""
        while len(received) < len(body):
            answer = receiver.request_frame(p.TRANSFER_READ, {"sender": sender_id, "transfer_id": 7,
                                                              "offset": len(received)})
            check_ok = answer.type == p.TRANSFER_READ | p.RESPONSE_BIT and answer.fields()["offset"] == len(received)
            if not check("TRANSFER_READ answers the bytes at the offset asked", check_ok, answer):
                break
            received += answer.payload
        check("the bytes read are the bytes sent", received == body, len(received))
        answer = receiver.request_frame(p.TRANSFER_READ, {"sender": sender_id, "transfer_id": 7,
                                                          "offset": len(body)})
        check("a read at the end answers an empty payload", answer.payload == b"", answer)
        receiver.request(p.TRANSFER_CLOSE, {"sender": sender_id, "transfer_id": 7, "outcome": p.COMPLETED})
        status = sender.next_event(types=(p.TRANSFER_STATUS,)).fields()
        check("the sender is told COMPLETED", status["outcome"] == p.COMPLETED and status["transfer_id"] == 7
              and status["recipient"] == receiver_id, status)
        listed = sender.request(p.LIST_TRANSFERS)
        check("LIST_TRANSFERS is empty afterwards", listed.get("transfers", []) == [], listed)
        answer = receiver.request_frame(p.TRANSFER_READ, {"sender": sender_id, "transfer_id": 7, "offset": 0})
        expect_error("a read of a closed transfer -> TRANSFER_NOT_FOUND", answer, 100, answer.request_id)
        sender.close()
        receiver.close()

    node_links(suffix)

    pings = a.server_pings_answered + b.server_pings_answered
    print(f"info   server PINGs answered with PONG during the run: {pings} "
          f"(heartbeat interval {(a.hello_ok or {}).get('heartbeat_interval_ms')} ms)")

    a.close()
    b.close()
    for note in notes:
        print(f"note   {note}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


# --- Node links (sections 22 and 26.9) ------------------------------------------------------
# run.sh starts the nodes: `parley node` in peer-to-peer mode (INTEROP_P2P_*) and three `parley
# receive --data --files` nodes logged on to the server (INTEROP_RECEIVERS: "FD:USER:INBOX ..."),
# the third with --accept-files none.
# Every wait is on a frame or on a line the node prints, with a generous deadline.


def expect_fatal(name: str, link: n.PeerLink, code: int) -> None:
    """The node sends a fatal ERROR with request ID 0 and `code`, then closes the link."""
    error = link.next_event(types=(p.ERROR,))
    meta = error.fields()
    check(name, meta["code"] == code and meta["fatal"] and error.request_id == 0, error)
    expect_closed("... and closes the link", link)


def expect_answer(name: str, answer: p.Frame, frame_type: int, **fields: object) -> dict:
    """`answer` is `frame_type`'s answer with the same request ID and these meta fields."""
    meta = answer.fields() if answer.type == frame_type | p.RESPONSE_BIT else {}
    check(name, answer.type == frame_type | p.RESPONSE_BIT and all(meta.get(k) == v for k, v in fields.items()),
          f"got {answer}")
    return meta


def refused(port: int, context: ssl.SSLContext) -> str:
    """Dials the node with `context`: "" if the node refuses the link (the TLS handshake fails, or
    the node closes the link without a NODE_HELLO), else what happened."""
    try:
        link = n.PeerLink("127.0.0.1", port, None, timeout=30.0, context=context)
    except (ssl.SSLError, OSError):
        return ""
    try:
        frame = link.next_frame(timeout=30.0)
        return f"got {frame}"
    except (p.ConnectionClosed, OSError):
        return ""
    except TimeoutError:
        return "the link stayed open"
    finally:
        link.close()


def settle(out: n.NodeOutput, link: n.PeerLink, recipient: int, sender: int) -> str:
    """Waits until `parley receive` has handled what came before: it prints a later message, or
    it exits (it ends at a file that failed). Returns which."""
    marker = p.random_message_id()
    if not link.closed:
        try:
            link.message("marker", marker, recipients=[recipient], sender=sender)
        except (p.ConnectionClosed, OSError, TimeoutError):
            pass
    try:
        out.wait_for(lambda line: line.get("id") == marker, links=(link,))
        return "went on"
    except n.OutputEnded:
        return "exited"


def node_links(suffix: str) -> None:
    if "INTEROP_P2P_FD" not in os.environ:
        notes.append("node links not checked: run.sh starts the nodes they need")
        return
    scratch = tempfile.mkdtemp(dir=os.environ.get("INTEROP_SCRATCH"))
    started = json.loads(os.environ["INTEROP_P2P_STARTED"])
    p2p_port, p2p_id = started["port"], started["nodeID"]
    p2p = n.NodeOutput(int(os.environ["INTEROP_P2P_FD"]), "the peer-to-peer node")
    receivers = []
    for item in os.environ["INTEROP_RECEIVERS"].split():
        fd, user, inbox = item.split(":", 2)
        receivers.append((n.NodeOutput(int(fd), f"the receiving node of user {user}"), int(user), inbox))
    me = n.NodeIdentity(scratch, "py-peer")

    # --- TLS and NODE_HELLO (22.1, 22.2), against the peer-to-peer node ---------------------------
    link = None
    with step("node link TLS"):
        link = n.PeerLink("127.0.0.1", p2p_port, me)
        check("node link: mutual TLS 1.3, we present a self-signed P-256 certificate",
              link.sock.version() == "TLSv1.3", link.sock.version())
        certificate = n.parse_certificate(link.peer_certificate)
        algorithm, curve, point = n.spki_curve_point(certificate.spki)
        check("node link: the node's certificate is self-signed (issuer = subject, ECDSA-SHA256 by its own key)",
              n.verify_self_signed(certificate))
        check("node link: for a P-256 key, uncompressed: the 91-byte SubjectPublicKeyInfo of section 17.5",
              len(certificate.spki) == 91 and certificate.spki.startswith(n.SPKI_PREFIX + b"\x04"), certificate.spki.hex())
        check("node link: base32(SHA-256(SPKI)) is the node ID `parley node` printed",
              link.peer_node_id == p2p_id and len(p2p_id) == 52, (link.peer_node_id, p2p_id))
        hello = link.peer_hello()
        check("the node sends NODE_HELLO, request ID 0: its node ID, user 0, its name, no server (peer-to-peer)",
              hello.request_id == 0 and hello.fields() == {"node_id": p2p_id, "user_id": 0,
                                                           "user_name": "interop-p2p", "server": ""}, hello)
        tls12 = me.context(minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
        result = refused(p2p_port, tls12)
        check("a TLS 1.2 client is refused", result == "", result)
        result = refused(p2p_port, me.context(present=False))
        check("a client without a certificate is refused (no NODE_HELLO, the link closes)", result == "", result)
        result = refused(p2p_port, n.NodeIdentity(scratch, "p384", curve="secp384r1").context())
        check("a client with a self-signed P-384 certificate is refused", result == "", result)
        result = refused(p2p_port, n.NodeIdentity(scratch, "issued", issuer=me).context())
        check("a client with a P-256 certificate signed by another key (not self-signed) is refused",
              result == "", result)

    with step("node link messages"):
        assert link is not None
        early = p.random_message_id()
        answer = link.message("too early", early)
        expect_error("PEER_MESSAGE before our NODE_HELLO -> ERROR HANDSHAKE_REQUIRED (8), non-fatal, same request ID",
                     answer, 8, answer.request_id)
        answer = link.start(1, "early.txt", 1)
        expect_error("PEER_TRANSFER_START before NODE_HELLO -> HANDSHAKE_REQUIRED (8)", answer, 8, answer.request_id)
        link.send_hello(user_name="py-peer")
        text_id, text = p.random_message_id(), "hello node 👋 from Python"
        answer = link.message(text, text_id)
        expect_answer("PEER_MESSAGE (TEXT, no recipients: to the node itself) -> PEER_MESSAGE_OK",
                      answer, n.PEER_MESSAGE)
        check("... with its request ID and an empty meta", answer.request_id == link.next_request_id - 1
              and answer.meta == b"", answer)
        line = p2p.wait_for(lambda item: item.get("event") == "message" and item.get("id") == text_id, links=(link,))
        check("the node prints the text, from our node ID, route direct, sender 0 (no user)",
              line.get("text") == text and line.get("fromNode") == me.node_id and line.get("route") == "direct"
              and line.get("sender") == 0 and line.get("recipients") == [], line)
        binary_id, binary = p.random_message_id(), bytes(range(256)) + b"\x00\xff"
        answer = link.message(binary, binary_id)
        expect_answer("PEER_MESSAGE (BINARY) -> PEER_MESSAGE_OK", answer, n.PEER_MESSAGE)
        line = p2p.wait_for(lambda item: item.get("event") == "message" and item.get("id") == binary_id, links=(link,))
        check("the node prints the binary body (base64) as sent",
              line.get("kind") == "binary" and base64.b64decode(line.get("base64", "")) == binary, line)
        answer = link.message(text, text_id)
        expect_answer("the same message ID again -> PEER_MESSAGE_OK again", answer, n.PEER_MESSAGE)
        bad_id = p.random_message_id()
        answer = link.message(b"\xff\xfe not UTF-8", bad_id, kind=p.KIND_TEXT)
        expect_error("a TEXT body that is not UTF-8 -> ERROR INVALID_UTF8 (30), non-fatal", answer, 30, answer.request_id)
        later_id = p.random_message_id()
        expect_answer("... and the link goes on (a later PEER_MESSAGE -> OK)", link.message("later", later_id),
                      n.PEER_MESSAGE)
        p2p.wait_for(lambda item: item.get("id") == later_id, links=(link,))
        check("the repeated message was printed once (the later one is printed after it)",
              p2p.count(lambda item: item.get("id") == text_id) == 1, p2p.lines)
        check("the refused messages (before NODE_HELLO, not UTF-8) were not printed",
              p2p.count(lambda item: item.get("id") in (early, bad_id)) == 0, p2p.lines)
        link.send_hello()
        expect_fatal("a second NODE_HELLO -> fatal ERROR PROTOCOL_VIOLATION (1), request ID 0", link, 1)

        other = n.PeerLink("127.0.0.1", p2p_port, me)
        other.send_hello(node_id=n.node_id_of(b"another key"))
        expect_fatal("a NODE_HELLO naming another node than TLS proved -> fatal PROTOCOL_VIOLATION (1)", other, 1)

        claimed = 3_000_000_000 + int(suffix[:4], 16)
        first, second = n.NodeIdentity(scratch, "claimer"), n.NodeIdentity(scratch, "impostor")
        owner = n.PeerLink("127.0.0.1", p2p_port, first)
        owner.open(user_id=claimed, user_name="claimer")
        claim_id = p.random_message_id()
        expect_answer("NODE_HELLO claiming a user the node has no key for: pinned on first use (PEER_MESSAGE -> OK)",
                      owner.message("from a user", claim_id, sender=claimed), n.PEER_MESSAGE)
        line = p2p.wait_for(lambda item: item.get("id") == claim_id, links=(owner,))
        check("... printed as sent by the claimed user", line.get("sender") == claimed, line)
        impostor = n.PeerLink("127.0.0.1", p2p_port, second)
        impostor.send_hello(user_id=claimed, user_name="impostor")
        expect_fatal("another key claiming that user -> fatal ERROR PINNED_KEY_MISMATCH (60)", impostor, 60)
        owner.close()

    # --- Direct transfers the node does not decide on (26.9), peer-to-peer node ------------------------
    with step("direct transfer requests (peer-to-peer node)"):
        t = n.PeerLink("127.0.0.1", p2p_port, me)
        t.open()
        tid = p.random_message_id()
        answer = t.start(tid, "x.bin", 10, recipient=1234)
        expect_error("PEER_TRANSFER_START for a user that is not the node's (it has none) -> USER_NOT_FOUND (20)",
                     answer, 20, answer.request_id)
        for bad_name in ("../x.bin", ".hidden", "a/b", "tab\there"):
            answer = t.start(tid, bad_name, 10)
            expect_error(f"START with the name {bad_name!r} -> INVALID_FILE_NAME (106)", answer, 106, answer.request_id)
        # Section 26.9: a stream (length known at its end) is offered like a file; the sender's CLOSE
        # settles the START that waits for the application's decision.
        stream_id, stream_start = p.random_message_id(), t.new_request_id()
        t.send_frame(n.PEER_TRANSFER_START, stream_start, p.encode("TransferStart", {
            "transfer_id": stream_id, "recipient": 0, "name": "live.log", "size": 0, "stream": True}))
        offered = p2p.wait_for(lambda item: item.get("event") == "fileOffered" and item.get("id") == stream_id,
                               links=(t,))
        check("a START of a stream is offered to the node's application (fileOffered)",
              offered.get("text") == "live.log", offered)
        t.close_transfer(stream_id)
        expect_error("the sender's CLOSE answers the stream's waiting START -> TRANSFER_NOT_FOUND (100)",
                     t.wait_answer(stream_start), 100, stream_start)
        answer = t.start(0, "x.bin", 10)
        expect_error("START with transfer_id 0 -> INVALID_REQUEST (5)", answer, 5, answer.request_id)
        start_id = t.new_request_id()
        t.send_frame(n.PEER_TRANSFER_START, start_id, p.encode("TransferStart", {
            "transfer_id": tid, "recipient": 0, "name": "undecided.bin", "size": 10}))
        offered = p2p.wait_for(lambda item: item.get("event") == "fileOffered" and item.get("id") == tid, links=(t,))
        check("a valid START is offered to the node's application (fileOffered: name, sender 0)",
              offered.get("text") == "undecided.bin" and offered.get("sender") == 0, offered)
        answer = t.chunk(tid, 0, b"abc")
        expect_error("a CHUNK before the application accepted -> TRANSFER_NOT_READY (107)", answer, 107, answer.request_id)
        answer = t.end(tid, 10, b"\0" * 32)
        expect_error("an END before the application accepted -> TRANSFER_NOT_READY (107)", answer, 107, answer.request_id)
        check("... and the START waits for the decision (not answered yet)", start_id not in t.answers, t.answers)
        answer = t.close_transfer(tid, reason="interop cancel")
        expect_answer("PEER_TRANSFER_CLOSE (sender 0, CANCELLED) -> PEER_TRANSFER_CLOSE_OK", answer,
                      n.PEER_TRANSFER_CLOSE)
        expect_error("... and the waiting START is answered TRANSFER_NOT_FOUND (100)", t.wait_answer(start_id), 100,
                     start_id)
        status = p2p.wait_for(lambda item: item.get("event") == "transferStatus" and item.get("id") == tid, links=(t,))
        check("... and the node's application is told: cancelled, with our reason",
              status.get("state") == "cancelled" and status.get("reason") == "interop cancel", status)
        answer = t.close_transfer(tid)
        expect_error("a CLOSE of a transfer neither side holds -> TRANSFER_NOT_FOUND (100)", answer, 100,
                     answer.request_id)
        answer = t.chunk(tid, 0, b"abc")
        expect_error("a CHUNK of an unknown transfer -> TRANSFER_NOT_FOUND (100)", answer, 100, answer.request_id)
        answer = t.end(tid, 10, b"\0" * 32)
        expect_error("an END of an unknown transfer -> TRANSFER_NOT_FOUND (100)", answer, 100, answer.request_id)
        t.close()

    # --- Keep-alive (22.4): PINGs both ways, and the idle timeout of a silent link ---------------------
    with step("node link keep-alive"):
        kept, silent = n.PeerLink("127.0.0.1", p2p_port, me), n.PeerLink("127.0.0.1", p2p_port, me)
        opened = time.monotonic()
        kept.open()
        silent.send_hello()
        pong = kept.ping(0xC0FFEE)
        check("our PING on a node link -> PONG with the same nonce and request ID",
              pong.type == p.PONG and pong.request_id == kept.next_request_id - 1
              and p.decode("Ping", pong.meta)["nonce"] == 0xC0FFEE, pong)
        frames = n.read_until_closed(silent, keep=(kept,), timeout=30.0)
        elapsed = time.monotonic() - opened
        pings = [frame for frame in frames if frame.type == p.PING]
        errors = [frame.fields() for frame in frames if frame.type == p.ERROR]
        check("the node PINGs a link it has not written to (request ID 0)",
              pings != [] and all(frame.request_id == 0 for frame in pings), [str(frame) for frame in frames])
        check("a link that stays silent (no PONG) is closed after the idle timeout (the reference node: 6 s) "
              "with a fatal ERROR IDLE_TIMEOUT (42), request ID 0",
              len(errors) == 1 and errors[0]["code"] == 42 and errors[0]["fatal"] and frames[-1].type == p.ERROR
              and frames[-1].request_id == 0 and elapsed >= 5.9, (elapsed, [str(frame) for frame in frames]))
        message_id = p.random_message_id()
        check("meanwhile the link whose PINGs we answered with PONG stayed open (PEER_MESSAGE -> OK)",
              kept.server_pings_answered >= 1 and not kept.closed
              and kept.message("still here", message_id).type == n.PEER_MESSAGE | p.RESPONSE_BIT,
              kept.server_pings_answered)
        kept.close()

    # --- A node logged on to the server: the user claim, and a whole transfer with a resume -----------
    if len(receivers) < 3:
        check("run.sh started three receiving nodes", False, receivers)
        return
    py_user, py_node = 0, n.NodeIdentity(scratch, "py-user-node")
    server = connect()
    with step("our node declared to the server"):
        server.hello()
        py_user = server.register(f"py-node-{suffix}", "pw")["user"]["user_id"]
        server.logoff()
        server.request(p.LOGON, {"user_id": py_user, "password": "pw", "node_public_key": py_node.spki,
                                 "node_id": py_node.node_id, "allow_direct": True})
        check("LOGON declaring our node key records it (the receiving nodes check our claim against it)",
              server.user_info(py_user)["node_id"] == py_node.node_id)

    def dial(user: int) -> tuple[n.PeerLink, dict]:
        """A link to the node the server vouches for `user`, at one of its direct addresses."""
        info = server.user_info(user)
        addresses = info["direct_addresses"]
        address = next((a for a in addresses if a.startswith("127.0.0.1:")), addresses[0] if addresses else "")
        host, _, port = address.rpartition(":")
        return n.PeerLink(host.strip("[]"), int(port), py_node), info

    out1, user1, inbox1 = receivers[0]
    with step("node link to a user's node"):
        r, info = dial(user1)
        check("the receiving node declared a 91-byte key, its node ID and direct addresses to the server",
              len(info["node_public_key"]) == 91 and info["node_id"] == n.node_id_of(info["node_public_key"])
              and info["direct_addresses"] != [], info)
        check("node link: it proves the key the server vouches for its user (SPKI and node ID)",
              n.parse_certificate(r.peer_certificate).spki == info["node_public_key"]
              and r.peer_node_id == info["node_id"])
        hello = r.open(user_id=py_user, user_name="py-user")
        check("its NODE_HELLO names its node, its user and its server (HOST:PORT)",
              hello["node_id"] == info["node_id"] and hello["user_id"] == user1
              and hello["server"] == f"{HOST}:{PORT}", hello)
        message_id = p.random_message_id()
        answer = r.message("hello user", message_id, recipients=[user1], sender=py_user)
        expect_answer("PEER_MESSAGE from our (server-vouched) user to its user -> PEER_MESSAGE_OK", answer,
                      n.PEER_MESSAGE)
        line = out1.wait_for(lambda item: item.get("event") == "message" and item.get("id") == message_id, links=(r,))
        check("`parley receive --data` prints it, sender = our user, recipients = its user",
              line.get("sender") == py_user and line.get("recipients") == [user1] and line.get("text") == "hello user",
              line)
        r.close()
        r, _ = dial(user1)
        r.open(user_id=py_user, user_name="py-user")
        answer = r.message("hello user", message_id, recipients=[user1], sender=py_user)
        expect_answer("the same message ID again on a new link (a resend after a lost answer) -> OK", answer,
                      n.PEER_MESSAGE)
        later_id = p.random_message_id()
        r.message("later", later_id, recipients=[user1], sender=py_user)
        out1.wait_for(lambda item: item.get("id") == later_id, links=(r,))
        check("... and it was not printed again (a later message was)",
              out1.count(lambda item: item.get("id") == message_id) == 1, out1.lines)
        impostor = n.PeerLink(r.sock.getpeername()[0], r.sock.getpeername()[1], n.NodeIdentity(scratch, "usurper"))
        impostor.send_hello(user_id=py_user)
        expect_fatal("another key claiming our user (the server vouches for ours) -> fatal PINNED_KEY_MISMATCH (60)",
                     impostor, 60)
        r.close()

    with step("direct transfer with a resume"):
        r, info = dial(user1)
        r.open(user_id=py_user)
        tid = p.random_message_id()
        name = f"interop-{suffix}.bin"
        body = os.urandom(200_000)  # 3 chunks of 64 KiB and 3,392 bytes
        digest = hashlib.sha256(body).digest()
        answer = r.start(tid, name, len(body), recipient=0)
        expect_error("START for user 0 at a node that has a user -> USER_NOT_FOUND (20)", answer, 20, answer.request_id)
        answer = r.start(tid, name, len(body), recipient=user1, timeout=70.0)
        state = expect_answer("START -> the application accepts: offset 0, UPLOADING", answer,
                              n.PEER_TRANSFER_START, transfer_id=tid, offset=0, phase=p.UPLOADING)
        chunk = state.get("chunk_size", 0)
        check("... chunk_size is the reference node's 65,536", chunk == 65_536, state)
        answer = r.chunk(tid, 5, b"abc")
        expect_error("a CHUNK at the wrong offset -> TRANSFER_OFFSET_MISMATCH (103)", answer, 103, answer.request_id)
        check("... the message names the receiver's offset (0)",
              re.search(r"\b0\b", answer.fields().get("message", "")) is not None, answer)
        answer = r.chunk(tid, 0, b"")
        expect_error("an empty CHUNK -> INVALID_REQUEST (5)", answer, 5, answer.request_id)
        in_flight = [r.send_chunk(tid, 0, body[:chunk]), r.send_chunk(tid, chunk, body[chunk:2 * chunk])]
        offsets = [r.wait_answer(request_id).fields().get("offset") for request_id in in_flight]
        check("two CHUNKs in flight, each where the one before ends -> the new offsets, in order",
              offsets == [chunk, 2 * chunk], offsets)
        partial = os.path.join(inbox1, f".{name}.{py_user}-{tid}.parley-part")
        with open(partial, "rb") as file:
            held = file.read()
        check("the partial file .NAME.SENDER-TRANSFER.parley-part holds the acknowledged bytes", held == body[:2 * chunk],
              len(held))
        r.close()

        r, _ = dial(user1)
        r.open(user_id=py_user)
        answer = r.start(tid, name, len(body), recipient=user1)
        expect_answer("after the link closed, START again on a new link (resume) -> the receiver's offset at once",
                      answer, n.PEER_TRANSFER_START, offset=2 * chunk, phase=p.UPLOADING)
        answer = r.start(tid, name, len(body) + 1, recipient=user1)
        expect_error("START again with another size -> INVALID_REQUEST (5)", answer, 5, answer.request_id)
        answer = r.end(tid, len(body), digest)
        expect_error("END before all the bytes -> TRANSFER_OFFSET_MISMATCH (103)", answer, 103, answer.request_id)
        offset = 2 * chunk
        answer = r.chunk(tid, offset, body[offset:offset + chunk + 1])
        expect_error("a CHUNK of chunk_size + 1 bytes -> INVALID_REQUEST (5)", answer, 5, answer.request_id)
        expect_answer("a CHUNK of chunk_size bytes -> OK", r.chunk(tid, offset, body[offset:offset + chunk]),
                      n.PEER_TRANSFER_CHUNK, offset=offset + chunk)
        offset += chunk
        answer = r.chunk(tid, offset, body[offset:] + b"!")
        expect_error("a CHUNK past the START's size -> INVALID_REQUEST (5)", answer, 5, answer.request_id)
        expect_answer("the last CHUNK -> OK, offset = size", r.chunk(tid, offset, body[offset:]),
                      n.PEER_TRANSFER_CHUNK, offset=len(body))
        answer = r.end(tid, len(body), digest)
        expect_answer("END with the SHA-256 -> CLOSED (2), COMPLETED (1), offset = size", answer,
                      n.PEER_TRANSFER_END, offset=len(body), phase=p.CLOSED, outcome=p.COMPLETED)
        saved = out1.wait_for(lambda item: item.get("event") == "file" and item.get("id") == tid, links=(r,))
        path = os.path.join(inbox1, name)
        with open(path, "rb") as file:
            content = file.read()
        check("`parley receive` saved it under its name in the inbox, with the bytes sent",
              saved.get("path") == path and saved.get("size") == len(body) and content == body, saved)
        if saved.get("sha256") != digest.hex():
            notes.append(f"parley receive --json printed sha256 {saved.get('sha256')!r} for a file that came "
                         "directly (the offer has none; the SHA-256 comes with PEER_TRANSFER_END)")
        check("... and the partial file is gone", not os.path.exists(partial))
        answer = r.start(tid, name, len(body), recipient=user1)
        expect_answer("START again after the end -> CLOSED, COMPLETED: nothing left to send", answer,
                      n.PEER_TRANSFER_START, phase=p.CLOSED, outcome=p.COMPLETED)

        # The sender gives up midway: the receiver deletes the partial file.
        gone = p.random_message_id()
        expect_answer("another START -> accepted", r.start(gone, "cancelled.bin", 1000, recipient=user1, timeout=70.0),
                      n.PEER_TRANSFER_START, offset=0)
        r.chunk(gone, 0, b"c" * 100)
        partial = os.path.join(inbox1, f".cancelled.bin.{py_user}-{gone}.parley-part")
        check("... its partial file holds the first chunk", os.path.getsize(partial) == 100)
        expect_answer("CLOSE (sender 0, CANCELLED) of a transfer under way -> PEER_TRANSFER_CLOSE_OK",
                      r.close_transfer(gone, reason="changed my mind"), n.PEER_TRANSFER_CLOSE)
        check("... and the receiver deleted the partial file", not os.path.exists(partial))
        how = settle(out1, r, user1, py_user)
        check("... and no file is presented", not os.path.exists(os.path.join(inbox1, "cancelled.bin"))
              and out1.count(lambda item: item.get("event") == "file" and item.get("id") == gone) == 0, out1.lines)
        notes.append(f"parley receive {how} after the sender cancelled a file it was receiving")
        r.close()

    out2, user2, inbox2 = receivers[1]
    with step("direct transfer with a wrong hash"):
        r, _ = dial(user2)
        r.open(user_id=py_user)
        tid = p.random_message_id()
        body = os.urandom(1000)
        expect_answer("a START to the second receiving node -> accepted",
                      r.start(tid, "wrong-hash.bin", len(body), recipient=user2, timeout=70.0),
                      n.PEER_TRANSFER_START, offset=0)
        expect_answer("... its whole file in one CHUNK -> OK", r.chunk(tid, 0, body), n.PEER_TRANSFER_CHUNK,
                      offset=len(body))
        answer = r.end(tid, len(body), hashlib.sha256(body + b"x").digest())
        expect_error("END with another SHA-256 -> TRANSFER_HASH_MISMATCH (104)", answer, 104, answer.request_id)
        how = settle(out2, r, user2, py_user)
        check("... and no file is presented: neither the file nor its partial file is in the inbox, none printed",
              os.listdir(inbox2) == [] and out2.count(lambda item: item.get("event") == "file") == 0,
              (os.listdir(inbox2), out2.lines))
        notes.append(f"parley receive {how} after a file arrived with a wrong SHA-256")
        r.close()

    out3, user3, inbox3 = receivers[2]
    with step("direct transfer declined"):
        r, _ = dial(user3)
        r.open(user_id=py_user)
        tid = p.random_message_id()
        answer = r.start(tid, "unwanted.bin", 10, recipient=user3, timeout=70.0)
        expect_error("START to a node that declines (parley receive --accept-files none) -> TRANSFER_REFUSED (105)",
                     answer, 105, answer.request_id)
        declined = out3.wait_for(lambda item: item.get("event") == "declined" and item.get("id") == tid, links=(r,))
        check("... with the application's reason, and nothing is in its inbox",
              "policy" in answer.fields().get("message", "") and os.listdir(inbox3) == [], (answer, declined))
        answer = r.chunk(tid, 0, b"x")
        expect_error("... a CHUNK of it -> TRANSFER_NOT_FOUND (100)", answer, 100, answer.request_id)
        r.close()
    server.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: interop_test.py HOST PORT TLS-FINGERPRINT", file=sys.stderr)
        sys.exit(2)
    HOST, PORT, FINGERPRINT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        status = main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print(f"{passed} passed, {failed + 1} failed")
        status = 1
    sys.exit(status)
