"""A node peer for the independent Python client: node-to-node links (PROTOCOL.md section 22) and
direct transfers (section 26.9), from the spec alone (Python 3 standard library, plus the
`openssl` command line to make keys and self-signed certificates, which `ssl` cannot do).

- `NodeIdentity`: a P-256 key and its self-signed certificate (or, for negative checks, a P-384
  key, or a certificate signed by another key), the DER SubjectPublicKeyInfo and the node ID
  (section 17.5: lowercase base32 of SHA-256 of the 91 SPKI bytes, no padding).
- `parse_certificate` and `verify_self_signed`: a minimal DER reader and an ECDSA P-256
  verification, to check that a node's certificate is self-signed for a P-256 key (section 22.1).
- `PeerLink`: a `parley_client.Connection` over mutual TLS 1.3 that presents a node certificate,
  with NODE_HELLO, PEER_MESSAGE and the PEER_TRANSFER_* requests.
- `NodeOutput`: the JSON lines a node process prints, read from an inherited file descriptor,
  waiting on them (never on the clock) while it keeps the open links answered (PING -> PONG).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

import parley_client as p

# ---------------------------------------------------------------------------------------------
# Frame types (sections 18, 22, 26.9) and their meta messages, added to the client's tables.

NODE_HELLO = 0x0201
PEER_MESSAGE = 0x0210
PEER_TRANSFER_START = 0x0230
PEER_TRANSFER_CHUNK = 0x0231
PEER_TRANSFER_END = 0x0232
PEER_TRANSFER_CLOSE = 0x0233

PINNED_KEY_MISMATCH = 60

p.SCHEMA["NodeHello"] = {1: ("node_id", "string", False), 2: ("user_id", "uint32", False),
                         3: ("user_name", "string", False), 4: ("server", "string", False)}
p.SCHEMA["PeerMessage"] = {1: ("message_id", "uint64", False), 2: ("sender", "uint32", False),
                           3: ("recipients", "uint32", True), 4: ("kind", "enum", False),
                           5: ("sent_at_ms", "int64", False)}
R = p.RESPONSE_BIT
p.META_OF_TYPE.update({
    NODE_HELLO: "NodeHello",
    PEER_MESSAGE: "PeerMessage", PEER_MESSAGE | R: "Empty",
    PEER_TRANSFER_START: "TransferStart", PEER_TRANSFER_START | R: "TransferState",
    PEER_TRANSFER_CHUNK: "TransferChunk", PEER_TRANSFER_CHUNK | R: "TransferState",
    PEER_TRANSFER_END: "TransferEnd", PEER_TRANSFER_END | R: "TransferState",
    PEER_TRANSFER_CLOSE: "TransferClose", PEER_TRANSFER_CLOSE | R: "Empty",
})
p.TYPE_NAMES.update({
    NODE_HELLO: "NODE_HELLO", PEER_MESSAGE: "PEER_MESSAGE", PEER_TRANSFER_START: "PEER_TRANSFER_START",
    PEER_TRANSFER_CHUNK: "PEER_TRANSFER_CHUNK", PEER_TRANSFER_END: "PEER_TRANSFER_END",
    PEER_TRANSFER_CLOSE: "PEER_TRANSFER_CLOSE",
})
p.ERROR_NAMES[PINNED_KEY_MISMATCH] = "PINNED_KEY_MISMATCH"

# ---------------------------------------------------------------------------------------------
# DER (X.690), only what a certificate needs: tag, length, content.

OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
OID_PRIME256V1 = bytes.fromhex("2a8648ce3d030107")  # 1.2.840.10045.3.1.7
OID_ECDSA_SHA256 = bytes.fromhex("2a8648ce3d040302")  # 1.2.840.10045.4.3.2
# The 26 bytes every node key starts with, then 04 || X || Y (section 17.5).
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


@dataclass
class Element:
    tag: int
    start: int  # of the tag byte
    content: int  # first content byte
    end: int  # after the last content byte

    def raw(self, data: bytes) -> bytes:
        return data[self.start:self.end]

    def value(self, data: bytes) -> bytes:
        return data[self.content:self.end]


def der_element(data: bytes, pos: int) -> Element:
    if pos + 2 > len(data):
        raise p.DecodeError("truncated DER element")
    tag, first = data[pos], data[pos + 1]
    content = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or content + count > len(data):
            raise p.DecodeError("unsupported DER length")
        length = int.from_bytes(data[content:content + count], "big")
        content += count
    if content + length > len(data):
        raise p.DecodeError("DER element longer than its container")
    return Element(tag, pos, content, content + length)


def der_children(data: bytes, parent: Element) -> list[Element]:
    children, pos = [], parent.content
    while pos < parent.end:
        child = der_element(data, pos)
        children.append(child)
        pos = child.end
    return children


@dataclass
class Certificate:
    tbs: bytes  # the signed bytes (TBSCertificate, DER)
    issuer: bytes
    subject: bytes
    spki: bytes  # SubjectPublicKeyInfo, DER
    signature_algorithm: bytes  # OID content bytes
    signature: bytes  # the BIT STRING's bits (an ECDSA-Sig-Value for ECDSA)


def parse_certificate(der: bytes) -> Certificate:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }"""
    top = der_element(der, 0)
    tbs, algorithm, signature = der_children(der, top)
    fields = der_children(der, tbs)
    if fields[0].tag == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    issuer, subject, spki = fields[2], fields[4], fields[5]
    algorithm_oid = der_children(der, algorithm)[0].value(der)
    bits = signature.value(der)
    if not bits or bits[0] != 0:
        raise p.DecodeError("a signature BIT STRING with unused bits")
    return Certificate(tbs.raw(der), issuer.raw(der), subject.raw(der), spki.raw(der), algorithm_oid, bits[1:])


def spki_curve_point(spki: bytes) -> tuple[bytes, bytes, bytes]:
    """(algorithm OID, curve OID, public key bytes) of an EC SubjectPublicKeyInfo."""
    top = der_element(spki, 0)
    algorithm, key = der_children(spki, top)
    oids = der_children(spki, algorithm)
    curve = oids[1].value(spki) if len(oids) > 1 else b""
    bits = key.value(spki)
    return oids[0].value(spki), curve, bits[1:]


def node_id_of(spki: bytes) -> str:
    """Section 17.5: lowercase base32 (RFC 4648) of SHA-256 of the SPKI, without padding."""
    return base64.b32encode(hashlib.sha256(spki).digest()).decode("ascii").rstrip("=").lower()


# ---------------------------------------------------------------------------------------------
# ECDSA over P-256 (FIPS 186-4), affine coordinates: enough to verify one signature.

P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
P256_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
          0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def on_p256(point: tuple[int, int]) -> bool:
    x, y = point
    return 0 <= x < P256_P and 0 <= y < P256_P and (y * y - (x**3 - 3 * x + P256_B)) % P256_P == 0


def _add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    (x1, y1), (x2, y2) = a, b
    if x1 == x2 and (y1 + y2) % P256_P == 0:
        return None
    if a == b:
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P256_P) % P256_P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P256_P) % P256_P
    x3 = (slope * slope - x1 - x2) % P256_P
    return x3, (slope * (x1 - x3) - y1) % P256_P


def _multiply(k: int, point: tuple[int, int]) -> tuple[int, int] | None:
    result, addend = None, point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def ecdsa_p256_verify(public_point: bytes, message: bytes, signature_der: bytes) -> bool:
    """Verifies an ECDSA-with-SHA256 signature (DER ECDSA-Sig-Value) by an uncompressed point."""
    if len(public_point) != 65 or public_point[0] != 4:
        return False
    q = (int.from_bytes(public_point[1:33], "big"), int.from_bytes(public_point[33:], "big"))
    if not on_p256(q):
        return False
    sequence = der_element(signature_der, 0)
    r_element, s_element = der_children(signature_der, sequence)
    r = int.from_bytes(r_element.value(signature_der), "big")
    s = int.from_bytes(s_element.value(signature_der), "big")
    if not (1 <= r < P256_N and 1 <= s < P256_N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, P256_N)
    point = _add(_multiply(e * w % P256_N, P256_G), _multiply(r * w % P256_N, q))
    return point is not None and point[0] % P256_N == r


def verify_self_signed(certificate: Certificate) -> bool:
    """Section 22.1: self-signed (issuer = subject, signed by its own key) for a P-256 key."""
    algorithm, curve, point = spki_curve_point(certificate.spki)
    return (algorithm == OID_EC_PUBLIC_KEY and curve == OID_PRIME256V1
            and certificate.issuer == certificate.subject
            and certificate.signature_algorithm == OID_ECDSA_SHA256
            and ecdsa_p256_verify(point, certificate.tbs, certificate.signature))


# ---------------------------------------------------------------------------------------------
# Identities: keys and certificates made with the openssl command line.


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=60)


class NodeIdentity:
    """A key (`key_path`) and certificate (`certificate_path`) in `directory`, by default a
    self-signed certificate for a new P-256 key: a node of its own."""

    def __init__(self, directory: str, name: str, curve: str = "prime256v1",
                 issuer: NodeIdentity | None = None):
        os.makedirs(directory, exist_ok=True)
        self.key_path = os.path.join(directory, f"{name}-key.pem")
        self.certificate_path = os.path.join(directory, f"{name}-cert.pem")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}",
                 "-pkeyopt", "ec_param_enc:named_curve", "-out", self.key_path)
        if issuer is None:
            _openssl("req", "-x509", "-new", "-key", self.key_path, "-sha256", "-days", "2",
                     "-subj", f"/CN={name}", "-out", self.certificate_path)
        else:
            request = os.path.join(directory, f"{name}.csr")
            _openssl("req", "-new", "-key", self.key_path, "-subj", f"/CN={name}", "-out", request)
            _openssl("x509", "-req", "-in", request, "-CA", issuer.certificate_path, "-CAkey", issuer.key_path,
                     "-set_serial", "2", "-sha256", "-days", "2", "-out", self.certificate_path)
        with open(self.certificate_path, encoding="ascii") as file:
            self.certificate_der = ssl.PEM_cert_to_DER_cert(file.read())
        self.spki = parse_certificate(self.certificate_der).spki
        self.node_id = node_id_of(self.spki)

    def context(self, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, present: bool = True) -> ssl.SSLContext:
        """A client context for a node link (section 22.1): TLS 1.3, this certificate; the peer's
        certificate is checked by its key afterwards, not by a chain."""
        context = link_context(minimum, maximum)
        if present:
            context.load_cert_chain(self.certificate_path, self.key_path)
        return context


def link_context(minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                 maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = minimum
    context.maximum_version = maximum
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ---------------------------------------------------------------------------------------------
# A node link.


class PeerLink(p.Connection):
    """A node link dialled to HOST:PORT with `identity` (section 22.1). The peer's certificate is
    in `peer_certificate` (DER) and its node ID in `peer_node_id`."""

    def __init__(self, host: str, port: int, identity: NodeIdentity | None, timeout: float = 30.0,
                 context: ssl.SSLContext | None = None):
        if context is None:
            assert identity is not None
            context = identity.context()
        super().__init__(host, port, timeout=timeout, context=context)
        self.identity = identity
        self.peer_certificate = self.sock.getpeercert(binary_form=True)
        self.peer_node_id = node_id_of(parse_certificate(self.peer_certificate).spki)

    def send_hello(self, user_id: int = 0, user_name: str = "py-peer", server: str = "",
                   node_id: str | None = None) -> None:
        """Our NODE_HELLO (section 22.2): request ID 0, unanswered."""
        assert self.identity is not None or node_id is not None
        self.send_frame(NODE_HELLO, 0, p.encode("NodeHello", {
            "node_id": node_id if node_id is not None else self.identity.node_id,
            "user_id": user_id, "user_name": user_name, "server": server}))

    def peer_hello(self, timeout: float | None = None) -> p.Frame:
        """The peer's NODE_HELLO (it sends it once TLS is up)."""
        return self.next_event(timeout=timeout, types=(NODE_HELLO,))

    def open(self, user_id: int = 0, user_name: str = "py-peer") -> dict[str, Any]:
        """Both NODE_HELLOs: returns the peer's."""
        self.send_hello(user_id, user_name)
        return self.peer_hello().fields()

    def message(self, body: bytes | str, message_id: int | None = None, recipients: list[int] = (),
                sender: int = 0, kind: int | None = None, request_id: int | None = None) -> p.Frame:
        """PEER_MESSAGE (section 22.3); returns its answer (PEER_MESSAGE_OK or ERROR)."""
        if kind is None:
            kind = p.KIND_TEXT if isinstance(body, str) else p.KIND_BINARY
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return self.request_frame(PEER_MESSAGE, {
            "message_id": message_id or p.random_message_id(), "sender": sender, "recipients": list(recipients),
            "kind": kind, "sent_at_ms": int(time.time() * 1000)}, payload, request_id=request_id)

    def start(self, transfer_id: int, name: str, size: int, recipient: int = 0, stream: bool = False,
              timeout: float | None = None) -> p.Frame:
        return self.request_frame(PEER_TRANSFER_START, {"transfer_id": transfer_id, "recipient": recipient,
                                                        "name": name, "size": size, "stream": stream},
                                  timeout=timeout)

    def send_chunk(self, transfer_id: int, offset: int, data: bytes) -> int:
        """Sends one PEER_TRANSFER_CHUNK without waiting; returns its request ID."""
        request_id = self.new_request_id()
        self.send_frame(PEER_TRANSFER_CHUNK, request_id,
                        p.encode("TransferChunk", {"transfer_id": transfer_id, "offset": offset}), data)
        return request_id

    def chunk(self, transfer_id: int, offset: int, data: bytes) -> p.Frame:
        return self.wait_answer(self.send_chunk(transfer_id, offset, data))

    def end(self, transfer_id: int, size: int, sha256: bytes) -> p.Frame:
        return self.request_frame(PEER_TRANSFER_END, {"transfer_id": transfer_id, "size": size, "sha256": sha256})

    def close_transfer(self, transfer_id: int, sender: int = 0, outcome: int = p.CANCELLED,
                       reason: str = "") -> p.Frame:
        return self.request_frame(PEER_TRANSFER_CLOSE, {"sender": sender, "transfer_id": transfer_id,
                                                        "outcome": outcome, "reason": reason})

    def pump(self) -> None:
        """Takes in whatever frames have arrived, without waiting for more: PINGs are answered,
        the rest is kept (events, answers). A closed link is marked closed."""
        while not self.closed:
            if not self.buffer and not self.sock.pending() and not select.select([self.sock], [], [], 0)[0]:
                return
            try:
                # One frame at a time (next_frame would wait on after a PING: a peer that PINGs
                # more often than its timeout would keep it from ever returning).
                frame = self.read_frame(timeout=2.0)
            except TimeoutError:
                return  # readable for TLS itself (a session ticket), or a frame still on its way
            except (p.ConnectionClosed, OSError):
                self.closed = True
                return
            if frame.type == p.PING:
                self.send_frame(p.PONG, frame.request_id, frame.meta)
                self.server_pings_answered += 1
                continue
            if frame.request_id != 0 and (frame.type & p.RESPONSE_BIT or frame.type == p.ERROR):
                self.answers[frame.request_id] = frame
            else:
                self.events.append(frame)


# ---------------------------------------------------------------------------------------------
# What a node process prints.


class OutputEnded(Exception):
    """The node process closed its standard output (it exited)."""


class NodeOutput:
    """The JSON lines a node process prints on an inherited file descriptor (run.sh opens it).

    `wait_for` returns the first line not taken yet that matches; every line read is kept in
    `lines`, so a check can also count what was printed."""

    def __init__(self, fd: int, name: str):
        self.fd = fd
        self.name = name
        self.buffer = b""
        self.lines: list[dict[str, Any]] = []
        self.taken: set[int] = set()
        self.ended = False
        os.set_blocking(fd, False)

    def _read(self, deadline: float, links: tuple[PeerLink, ...]) -> None:
        open_links = [link for link in links if not link.closed]
        for link in open_links:
            link.pump()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{self.name} printed no matching line in time")
        readable, _, _ = select.select([self.fd] + [link.sock for link in open_links], [], [], min(remaining, 1.0))
        if self.fd not in readable:
            return
        data = os.read(self.fd, 65536)
        if not data:
            self.ended = True
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "?", "line": line.decode("utf-8", "replace")})

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                 links: tuple[PeerLink, ...] = ()) -> dict[str, Any]:
        """The first line not taken yet that matches `predicate`, waiting for it (at most
        `timeout`) while the `links` stay answered. Raises OutputEnded if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            for index, line in enumerate(self.lines):
                if index not in self.taken and predicate(line):
                    self.taken.add(index)
                    return line
            if self.ended:
                raise OutputEnded(f"{self.name} exited")
            self._read(deadline, links)

    def wait_for_end(self, timeout: float = 30.0, links: tuple[PeerLink, ...] = ()) -> None:
        """Reads until the process closes its output (it exited)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            self._read(deadline, links)

    def count(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for line in self.lines if predicate(line))


def read_until_closed(link: PeerLink, keep: tuple[PeerLink, ...] = (), timeout: float = 60.0) -> list[p.Frame]:
    """Every frame `link` receives until the peer closes it, without answering anything (PINGs
    included: the link stays silent); the `keep` links are answered meanwhile."""
    frames: list[p.Frame] = []
    deadline = time.monotonic() + timeout
    while True:
        for other in keep:
            other.pump()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the link stayed open; it received {[str(frame) for frame in frames]}")
        if not link.buffer and not link.sock.pending():
            sockets = [link.sock] + [other.sock for other in keep if not other.closed]
            if link.sock not in select.select(sockets, [], [], min(remaining, 1.0))[0]:
                continue
        try:
            frames.append(link.read_frame(timeout=2.0))
        except TimeoutError:
            continue  # TLS data without a frame, or a frame still on its way
        except (p.ConnectionClosed, OSError):
            return frames
