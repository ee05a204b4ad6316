"""A minimal, independent Parley protocol client (Python 3 standard library only).

Written from docs/PROTOCOL.md alone, as proof that the document is complete: framing
(section 2), a hand-rolled protobuf encoder/decoder (section 4) driven by a small schema table
transcribed from section 5, and a blocking connection with request/answer matching (section 3)
and automatic PONGs (section 12). No generated code.
"""

from __future__ import annotations

import os
import hashlib
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# Frame types (section 6)

HELLO = 0x0001
ERROR = 0x0003
PING = 0x0004
PONG = 0x0005
REGISTER = 0x0010
LOGON = 0x0011
LOGOFF = 0x0012
USER_EXISTS = 0x0020
USER_ONLINE = 0x0021
GET_USER_INFO = 0x0022
FIND_USER_ID = 0x0023
FIND_USERS = 0x0024
UPDATE_USER_INFO = 0x0025
CHANGE_PASSWORD = 0x0026
SEND_MESSAGE = 0x0030
ACK_MESSAGES = 0x0031
MESSAGE = 0x0101
DELIVERY_RECEIPT = 0x0102
SERVER_SHUTDOWN = 0x0103
SESSION_REPLACED = 0x0104
# Contacts and presence (section 23)
GET_CONTACTS = 0x0040
ADD_CONTACT = 0x0041
UPDATE_CONTACT = 0x0042
REMOVE_CONTACT = 0x0043
SET_PRESENCE = 0x0044
PRESENCE = 0x0110
# Custom commands (section 24)
SEND_COMMAND = 0x0050
COMMAND_REPLY = 0x0051
COMMAND = 0x0120
# Message history (section 25)
SEARCH_HISTORY = 0x0060
# File and stream transfer (section 26)
TRANSFER_START = 0x0070
TRANSFER_CHUNK = 0x0071
TRANSFER_END = 0x0072
TRANSFER_READ = 0x0073
TRANSFER_CLOSE = 0x0074
LIST_TRANSFERS = 0x0075
TRANSFER_OFFER = 0x0130
TRANSFER_STATUS = 0x0131

RESPONSE_BIT = 0x8000

# The meta message of each frame type (section 6); answers are looked up as type | 0x8000.
META_OF_TYPE = {
    HELLO: "Hello",
    HELLO | RESPONSE_BIT: "HelloOk",
    ERROR: "Error",
    PING: "Ping",
    PONG: "Ping",
    REGISTER: "RegisterRequest",
    REGISTER | RESPONSE_BIT: "LogonResponse",
    LOGON: "LogonRequest",
    LOGON | RESPONSE_BIT: "LogonResponse",
    LOGOFF: "Empty",
    LOGOFF | RESPONSE_BIT: "Empty",
    USER_EXISTS: "UserIdRequest",
    USER_EXISTS | RESPONSE_BIT: "BoolResponse",
    USER_ONLINE: "UserIdRequest",
    USER_ONLINE | RESPONSE_BIT: "BoolResponse",
    GET_USER_INFO: "UserIdRequest",
    GET_USER_INFO | RESPONSE_BIT: "UserInfoResponse",
    FIND_USER_ID: "FindUserIdRequest",
    FIND_USER_ID | RESPONSE_BIT: "FindUserIdResponse",
    FIND_USERS: "FindUsersRequest",
    FIND_USERS | RESPONSE_BIT: "FindUsersResponse",
    UPDATE_USER_INFO: "UpdateUserInfoRequest",
    UPDATE_USER_INFO | RESPONSE_BIT: "UserInfoResponse",
    CHANGE_PASSWORD: "ChangePasswordRequest",
    CHANGE_PASSWORD | RESPONSE_BIT: "Empty",
    SEND_MESSAGE: "SendMessageRequest",
    SEND_MESSAGE | RESPONSE_BIT: "SendMessageResponse",
    ACK_MESSAGES: "AckMessagesRequest",
    ACK_MESSAGES | RESPONSE_BIT: "Empty",
    MESSAGE: "MessageEvent",
    DELIVERY_RECEIPT: "DeliveryReceiptEvent",
    SERVER_SHUTDOWN: "ServerShutdownEvent",
    SESSION_REPLACED: "SessionReplacedEvent",
    GET_CONTACTS: "Empty",
    GET_CONTACTS | RESPONSE_BIT: "ContactList",
    ADD_CONTACT: "ContactRequest",
    ADD_CONTACT | RESPONSE_BIT: "ContactResponse",
    UPDATE_CONTACT: "ContactRequest",
    UPDATE_CONTACT | RESPONSE_BIT: "ContactResponse",
    REMOVE_CONTACT: "UserIdRequest",
    REMOVE_CONTACT | RESPONSE_BIT: "Empty",
    SET_PRESENCE: "PresenceRequest",
    SET_PRESENCE | RESPONSE_BIT: "Empty",
    PRESENCE: "PresenceEvent",
    SEND_COMMAND: "CommandRequest",
    SEND_COMMAND | RESPONSE_BIT: "CommandResponse",
    COMMAND_REPLY: "CommandReply",
    COMMAND_REPLY | RESPONSE_BIT: "Empty",
    COMMAND: "CommandEvent",
    SEARCH_HISTORY: "SearchHistoryRequest",
    SEARCH_HISTORY | RESPONSE_BIT: "HistoryPage",
    TRANSFER_START: "TransferStart",
    TRANSFER_START | RESPONSE_BIT: "TransferState",
    TRANSFER_CHUNK: "TransferChunk",
    TRANSFER_CHUNK | RESPONSE_BIT: "TransferState",
    TRANSFER_END: "TransferEnd",
    TRANSFER_END | RESPONSE_BIT: "TransferState",
    TRANSFER_READ: "TransferRead",
    TRANSFER_READ | RESPONSE_BIT: "TransferChunk",
    TRANSFER_CLOSE: "TransferClose",
    TRANSFER_CLOSE | RESPONSE_BIT: "Empty",
    LIST_TRANSFERS: "Empty",
    LIST_TRANSFERS | RESPONSE_BIT: "TransferList",
    TRANSFER_OFFER: "TransferInfo",
    TRANSFER_STATUS: "TransferStatusEvent",
}

TYPE_NAMES = {
    HELLO: "HELLO", ERROR: "ERROR", PING: "PING", PONG: "PONG", REGISTER: "REGISTER",
    LOGON: "LOGON", LOGOFF: "LOGOFF", USER_EXISTS: "USER_EXISTS", USER_ONLINE: "USER_ONLINE",
    GET_USER_INFO: "GET_USER_INFO", FIND_USER_ID: "FIND_USER_ID", FIND_USERS: "FIND_USERS",
    UPDATE_USER_INFO: "UPDATE_USER_INFO", CHANGE_PASSWORD: "CHANGE_PASSWORD",
    SEND_MESSAGE: "SEND_MESSAGE", ACK_MESSAGES: "ACK_MESSAGES", MESSAGE: "MESSAGE",
    DELIVERY_RECEIPT: "DELIVERY_RECEIPT", SERVER_SHUTDOWN: "SERVER_SHUTDOWN",
    SESSION_REPLACED: "SESSION_REPLACED", GET_CONTACTS: "GET_CONTACTS", ADD_CONTACT: "ADD_CONTACT",
    UPDATE_CONTACT: "UPDATE_CONTACT", REMOVE_CONTACT: "REMOVE_CONTACT", SET_PRESENCE: "SET_PRESENCE",
    PRESENCE: "PRESENCE", SEND_COMMAND: "SEND_COMMAND", COMMAND_REPLY: "COMMAND_REPLY", COMMAND: "COMMAND",
    SEARCH_HISTORY: "SEARCH_HISTORY",
    TRANSFER_START: "TRANSFER_START", TRANSFER_CHUNK: "TRANSFER_CHUNK", TRANSFER_END: "TRANSFER_END",
    TRANSFER_READ: "TRANSFER_READ", TRANSFER_CLOSE: "TRANSFER_CLOSE", LIST_TRANSFERS: "LIST_TRANSFERS",
    TRANSFER_OFFER: "TRANSFER_OFFER", TRANSFER_STATUS: "TRANSFER_STATUS",
}


def type_name(frame_type: int) -> str:
    base = TYPE_NAMES.get(frame_type & ~RESPONSE_BIT, f"0x{frame_type & ~RESPONSE_BIT:04x}")
    return base + "_OK" if frame_type & RESPONSE_BIT else base


# Enums (section 5)
USER_FIELD_UNSPECIFIED, USER_FIELD_USER_NAME, USER_FIELD_FIRST_NAME, USER_FIELD_LAST_NAME = 0, 1, 2, 3
USER_FIELD_ORGANIZATION, USER_FIELD_DEPARTMENT, USER_FIELD_APPLICATION, USER_FIELD_USER_ID = 4, 5, 6, 7
MATCH_EXACT, MATCH_PREFIX, MATCH_CONTAINS = 0, 1, 2
ONLINE_ANY, ONLINE_ONLINE, ONLINE_OFFLINE = 0, 1, 2
KIND_TEXT, KIND_BINARY = 0, 1
STATUS_UNSPECIFIED, ACCEPTED_ONLINE, ACCEPTED_OFFLINE, ACCEPTED_SERVER, FAILED = 0, 1, 2, 3, 4
PRESENCE_OFFLINE, PRESENCE_ONLINE, PRESENCE_AWAY, PRESENCE_BUSY = 0, 1, 2, 3
DISPLAY_USER_NAME, DISPLAY_FIRST_NAME, DISPLAY_LAST_NAME, DISPLAY_FULL_NAME, DISPLAY_CUSTOM = 0, 1, 2, 3, 4
COMMAND_REPLIED, COMMAND_DELIVERED, COMMAND_STORED = 0, 1, 2
HISTORY_KIND_TEXT, HISTORY_KIND_BINARY, HISTORY_KIND_FILE = 0, 1, 2
TEXT_MATCH_CONTAINS, TEXT_MATCH_PREFIX, TEXT_MATCH_EXACT = 0, 1, 2
DELIVERY_FILTER_ANY, DELIVERY_FILTER_DELIVERED, DELIVERY_FILTER_UNDELIVERED = 0, 1, 2
UPLOADING, READY, CLOSED = 0, 1, 2  # TransferPhase (section 26.3)
OUTCOME_NONE, COMPLETED, DECLINED, CANCELLED, FAILED_OUTCOME, EXPIRED, DELETED = 0, 1, 2, 3, 4, 5, 6

# Error codes (section 16)
ERROR_NAMES = {
    1: "PROTOCOL_VIOLATION", 2: "FRAME_TOO_LARGE", 3: "UNSUPPORTED_VERSION", 4: "UNKNOWN_REQUEST",
    5: "INVALID_REQUEST", 6: "NOT_LOGGED_ON", 7: "ALREADY_LOGGED_ON", 8: "HANDSHAKE_REQUIRED",
    10: "INVALID_CREDENTIALS", 11: "TOO_MANY_ATTEMPTS", 12: "SESSION_EXISTS", 13: "SESSION_REPLACED",
    20: "USER_NOT_FOUND", 21: "USER_ALREADY_EXISTS", 22: "INVALID_USER_ID", 23: "USER_IDS_EXHAUSTED",
    30: "INVALID_UTF8", 31: "TOO_MANY_RECIPIENTS", 32: "RECIPIENT_NOT_FOUND",
    33: "SERVER_APPLICATION_UNAVAILABLE", 34: "MESSAGE_REJECTED", 40: "TOO_MANY_CONNECTIONS",
    41: "SHUTTING_DOWN", 42: "IDLE_TIMEOUT", 43: "SLOW_CONSUMER", 44: "KICKED", 50: "INTERNAL_ERROR", 51: "STORAGE_ERROR",
    70: "CONTACT_NOT_FOUND", 71: "TOO_MANY_CONTACTS", 72: "INVALID_PRESENCE", 73: "CONTACT_REFUSED",
    80: "NO_HANDLER", 81: "COMMAND_FAILED", 82: "RECIPIENT_OFFLINE", 83: "COMMAND_TIMED_OUT",
    84: "COMMAND_NOT_PENDING", 90: "HISTORY_UNAVAILABLE", 91: "INVALID_HISTORY_CURSOR", 100: "TRANSFER_NOT_FOUND",
    101: "FILE_TOO_LARGE", 102: "TRANSFER_QUOTA_EXCEEDED", 103: "TRANSFER_OFFSET_MISMATCH", 104: "TRANSFER_HASH_MISMATCH",
    105: "TRANSFER_REFUSED", 106: "INVALID_FILE_NAME", 107: "TRANSFER_NOT_READY",
}

# ---------------------------------------------------------------------------------------------
# Protobuf schema, transcribed from PROTOCOL.md section 5: field number -> (name, type, repeated).
# Types: uint32, uint64, int64, bool, enum, string, bytes, or the name of another message.

SCHEMA: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Hello": {1: ("magic", "string", False), 2: ("min_version", "uint32", False),
              3: ("max_version", "uint32", False), 4: ("capabilities", "string", True),
              5: ("agent", "string", False)},
    "HelloOk": {1: ("version", "uint32", False), 2: ("capabilities", "string", True),
                3: ("agent", "string", False), 4: ("max_frame_size", "uint32", False),
                5: ("heartbeat_interval_ms", "uint32", False), 6: ("idle_timeout_ms", "uint32", False),
                7: ("server_user_id", "uint32", False), 8: ("server_name", "string", False)},
    "Error": {1: ("code", "uint32", False), 2: ("message", "string", False),
              3: ("retry_after_ms", "uint32", False), 4: ("fatal", "bool", False),
              5: ("application_code", "uint32", False)},
    "Ping": {1: ("nonce", "uint64", False)},
    "Empty": {},
    "UserInfo": {1: ("user_id", "uint32", False), 2: ("user_name", "string", False),
                 3: ("first_name", "string", False), 4: ("last_name", "string", False),
                 5: ("organization", "string", False), 6: ("department", "string", False),
                 7: ("application", "string", False), 8: ("online", "bool", False),
                 9: ("registered_at_ms", "int64", False), 10: ("node_id", "string", False),
                 11: ("node_public_key", "bytes", False), 12: ("direct_addresses", "string", True),
                 13: ("allow_direct", "bool", False), 14: ("node_key_updated_at_ms", "int64", False)},
    "RegisterRequest": {1: ("info", "UserInfo", False), 2: ("password", "string", False),
                        3: ("requested_user_id", "uint32", False), 4: ("node_public_key", "bytes", False),
                        5: ("node_id", "string", False), 6: ("direct_addresses", "string", True),
                        7: ("allow_direct", "bool", False)},
    "LogonResponse": {1: ("user", "UserInfo", False), 2: ("stored_messages", "uint32", False),
                      3: ("resumption_token", "string", False),
                      4: ("resumption_token_expires_at_ms", "int64", False)},
    "LogonRequest": {1: ("user_id", "uint32", False), 2: ("password", "string", False),
                     3: ("node_public_key", "bytes", False), 4: ("node_id", "string", False),
                     5: ("direct_addresses", "string", True), 6: ("allow_direct", "bool", False),
                     7: ("resumption_token", "string", False), 8: ("presence", "enum", False),
                     9: ("presence_text", "string", False)},
    "UserIdRequest": {1: ("user_id", "uint32", False)},
    "BoolResponse": {1: ("value", "bool", False)},
    "UserInfoResponse": {1: ("user", "UserInfo", False)},
    "FindUserIdRequest": {1: ("user_name", "string", False)},
    "FindUserIdResponse": {1: ("user_ids", "uint32", True)},
    "UserFilter": {1: ("field", "enum", False), 2: ("match", "enum", False), 3: ("value", "string", False)},
    "FindUsersRequest": {1: ("filters", "UserFilter", True), 2: ("online", "enum", False),
                         3: ("sort", "enum", False), 4: ("descending", "bool", False),
                         5: ("limit", "uint32", False)},
    "FindUsersResponse": {1: ("users", "UserInfo", True), 2: ("truncated", "bool", False)},
    "UpdateUserInfoRequest": {1: ("info", "UserInfo", False)},
    "ChangePasswordRequest": {1: ("old_password", "string", False), 2: ("new_password", "string", False)},
    "SendMessageRequest": {1: ("message_id", "uint64", False), 2: ("recipients", "uint32", True),
                           3: ("kind", "enum", False), 4: ("sent_at_ms", "int64", False),
                           5: ("want_receipt", "bool", False)},
    "RecipientResult": {1: ("recipient", "uint32", False), 2: ("status", "enum", False),
                        3: ("error_code", "uint32", False), 4: ("error_message", "string", False),
                        5: ("duplicate", "bool", False)},
    "SendMessageResponse": {1: ("results", "RecipientResult", True)},
    "MessageEvent": {1: ("message_id", "uint64", False), 2: ("sender", "uint32", False),
                     3: ("recipients", "uint32", True), 4: ("kind", "enum", False),
                     5: ("sent_at_ms", "int64", False), 6: ("delivered_at_ms", "int64", False),
                     7: ("stored_at_ms", "int64", False)},
    "MessageRef": {1: ("sender", "uint32", False), 2: ("message_id", "uint64", False)},
    "AckMessagesRequest": {1: ("messages", "MessageRef", True)},
    "DeliveryReceiptEvent": {1: ("message_id", "uint64", False), 2: ("recipient", "uint32", False),
                             3: ("acknowledged_at_ms", "int64", False)},
    "ServerShutdownEvent": {1: ("reason", "string", False)},
    "SessionReplacedEvent": {1: ("reason", "string", False)},
    # Section 23.2.1
    "Contact": {1: ("user_id", "uint32", False), 2: ("display_rule", "enum", False),
                3: ("custom_name", "string", False), 4: ("added_at_ms", "int64", False),
                5: ("user", "UserInfo", False)},
    "ContactList": {1: ("contacts", "Contact", True), 2: ("maximum", "uint32", False)},
    "ContactRequest": {1: ("user_id", "uint32", False), 2: ("display_rule", "enum", False),
                       3: ("custom_name", "string", False)},
    "ContactResponse": {1: ("contact", "Contact", False)},
    "PresenceRequest": {1: ("state", "enum", False), 2: ("text", "string", False)},
    "PresenceInfo": {1: ("user_id", "uint32", False), 2: ("state", "enum", False), 3: ("text", "string", False),
                     4: ("since_ms", "int64", False)},
    "PresenceEvent": {1: ("presences", "PresenceInfo", True), 2: ("snapshot", "bool", False),
                      3: ("contacts", "ContactList", False)},
    # Section 24.3
    "CommandRequest": {1: ("name", "string", False), 2: ("recipient", "uint32", False),
                       3: ("timeout_ms", "uint32", False), 4: ("fire_and_forget", "bool", False),
                       5: ("store_if_offline", "bool", False)},
    "CommandResponse": {1: ("disposition", "enum", False)},
    "CommandEvent": {1: ("command_id", "uint64", False), 2: ("sender", "uint32", False),
                     3: ("name", "string", False), 4: ("fire_and_forget", "bool", False),
                     5: ("timeout_ms", "uint32", False), 6: ("sent_at_ms", "int64", False)},
    "CommandReply": {1: ("command_id", "uint64", False), 2: ("error_code", "uint32", False),
                     3: ("application_code", "uint32", False), 4: ("text", "string", False)},
    # Section 25.3
    "SearchHistoryRequest": {1: ("senders", "uint32", True), 2: ("recipients", "uint32", True),
                             3: ("conversation_with", "uint32", True), 4: ("sent_after_ms", "int64", False),
                             5: ("sent_before_ms", "int64", False), 6: ("delivered_after_ms", "int64", False),
                             7: ("delivered_before_ms", "int64", False), 8: ("text", "string", False),
                             9: ("text_match", "enum", False), 10: ("kinds", "enum", True),
                             11: ("delivery", "enum", False), 12: ("oldest_first", "bool", False),
                             13: ("limit", "uint32", False), 14: ("cursor", "string", False)},
    "HistoryEntry": {1: ("message_id", "uint64", False), 2: ("sender", "uint32", False),
                     3: ("recipient", "uint32", False), 4: ("kind", "enum", False), 5: ("sent_at_ms", "int64", False),
                     6: ("delivered_at_ms", "int64", False), 7: ("body", "bytes", False)},
    "HistoryPage": {1: ("entries", "HistoryEntry", True), 2: ("next_cursor", "string", False)},
    # Section 26.3
    "TransferStart": {1: ("transfer_id", "uint64", False), 2: ("recipient", "uint32", False),
                      3: ("name", "string", False), 4: ("size", "uint64", False), 5: ("stream", "bool", False)},
    "TransferState": {1: ("transfer_id", "uint64", False), 2: ("offset", "uint64", False),
                      3: ("chunk_size", "uint32", False), 4: ("phase", "enum", False), 5: ("outcome", "enum", False)},
    "TransferChunk": {1: ("transfer_id", "uint64", False), 2: ("offset", "uint64", False),
                      3: ("sender", "uint32", False)},
    "TransferEnd": {1: ("transfer_id", "uint64", False), 2: ("size", "uint64", False), 3: ("sha256", "bytes", False)},
    "TransferRead": {1: ("sender", "uint32", False), 2: ("transfer_id", "uint64", False),
                     3: ("offset", "uint64", False), 4: ("length", "uint32", False)},
    "TransferClose": {1: ("sender", "uint32", False), 2: ("transfer_id", "uint64", False),
                      3: ("outcome", "enum", False), 4: ("reason", "string", False)},
    "TransferInfo": {1: ("transfer_id", "uint64", False), 2: ("sender", "uint32", False),
                     3: ("recipient", "uint32", False), 4: ("name", "string", False), 5: ("size", "uint64", False),
                     6: ("sha256", "bytes", False), 7: ("phase", "enum", False), 8: ("offset", "uint64", False),
                     9: ("created_at_ms", "int64", False), 10: ("expires_at_ms", "int64", False),
                     11: ("stream", "bool", False)},
    "TransferList": {1: ("transfers", "TransferInfo", True)},
    "TransferStatusEvent": {1: ("transfer_id", "uint64", False), 2: ("sender", "uint32", False),
                            3: ("recipient", "uint32", False), 4: ("outcome", "enum", False),
                            5: ("reason", "string", False), 6: ("at_ms", "int64", False)},
}

SCALARS = {"uint32", "uint64", "int64", "bool", "enum"}
DEFAULTS = {"uint32": 0, "uint64": 0, "int64": 0, "bool": False, "enum": 0, "string": "", "bytes": b""}

WT_VARINT, WT_I64, WT_LEN, WT_I32 = 0, 1, 2, 5


class DecodeError(Exception):
    pass


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    for i in range(10):
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7
    raise DecodeError("varint longer than 10 bytes")


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _scalar_int(kind: str, value: Any) -> int:
    if kind == "bool":
        return 1 if value else 0
    return int(value)


def encode(message: str, values: dict[str, Any] | None = None) -> bytes:
    """Encodes `values` (field name -> value) as message `message`. Defaults are omitted."""
    values = values or {}
    schema = SCHEMA[message]
    names = {name: (number, kind, repeated) for number, (name, kind, repeated) in schema.items()}
    for name in values:
        if name not in names:
            raise KeyError(f"{message} has no field {name}")
    out = bytearray()
    for number in sorted(schema):
        name, kind, repeated = schema[number]
        if name not in values or values[name] is None:
            continue
        value = values[name]
        if repeated:
            if not value:
                continue
            if kind in SCALARS:  # packed
                body = b"".join(encode_varint(_scalar_int(kind, v)) for v in value)
                out += _key(number, WT_LEN) + encode_varint(len(body)) + body
            else:
                for element in value:
                    out += _encode_single(number, kind, element)
        else:
            if kind in DEFAULTS and value == DEFAULTS[kind]:
                continue
            out += _encode_single(number, kind, value)
    return bytes(out)


def _encode_single(number: int, kind: str, value: Any) -> bytes:
    if kind in SCALARS:
        return _key(number, WT_VARINT) + encode_varint(_scalar_int(kind, value))
    if kind == "string":
        raw = value.encode("utf-8")
    elif kind == "bytes":
        raw = bytes(value)
    else:  # nested message
        raw = encode(kind, value)
    return _key(number, WT_LEN) + encode_varint(len(raw)) + raw


def iter_fields(data: bytes):
    """Yields (field number, wire type, value) for each field; value is an int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == WT_VARINT:
            value, pos = decode_varint(data, pos)
        elif wire_type == WT_I64:
            if pos + 8 > len(data):
                raise DecodeError("truncated fixed64")
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == WT_LEN:
            length, pos = decode_varint(data, pos)
            if pos + length > len(data):
                raise DecodeError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire_type == WT_I32:
            if pos + 4 > len(data):
                raise DecodeError("truncated fixed32")
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value


def _convert_int(kind: str, value: int) -> Any:
    if kind == "bool":
        return value != 0
    if kind == "uint32":
        return value & 0xFFFFFFFF
    if kind == "int64" and value >= 1 << 63:
        return value - (1 << 64)
    return value


def decode(message: str, data: bytes) -> dict[str, Any]:
    """Decodes `data` as `message`: every schema field present (absent = default), unknown fields
    skipped, repeated scalars accepted packed and unpacked, last value wins for singular fields."""
    schema = SCHEMA[message]
    result: dict[str, Any] = {}
    for number, (name, kind, repeated) in schema.items():
        if repeated:
            result[name] = []
        elif kind in DEFAULTS:
            result[name] = DEFAULTS[kind]
        else:
            result[name] = decode(kind, b"")
    for number, wire_type, value in iter_fields(data):
        if number not in schema:
            continue  # unknown field: already skipped by wire type
        name, kind, repeated = schema[number]
        if kind in SCALARS:
            if wire_type == WT_VARINT:
                items = [value]
            elif wire_type == WT_LEN:  # packed
                items, pos = [], 0
                while pos < len(value):
                    item, pos = decode_varint(value, pos)
                    items.append(item)
            else:
                raise DecodeError(f"{message}.{name}: wire type {wire_type} for a varint field")
            items = [_convert_int(kind, item) for item in items]
            if repeated:
                result[name].extend(items)
            elif items:
                result[name] = items[-1]
        else:
            if wire_type != WT_LEN:
                raise DecodeError(f"{message}.{name}: wire type {wire_type} for a length-delimited field")
            if kind == "string":
                item = value.decode("utf-8")  # strict: invalid UTF-8 raises
            elif kind == "bytes":
                item = bytes(value)
            else:
                item = decode(kind, value)
            if repeated:
                result[name].append(item)
            else:
                result[name] = item
    return result


# ---------------------------------------------------------------------------------------------
# Framing (section 2)

HEADER = struct.Struct(">HHII")  # type, flags, request ID, meta length (after the length field)
HEADER_SIZE = 12


def encode_frame(frame_type: int, request_id: int, meta: bytes = b"", payload: bytes = b"", flags: int = 0) -> bytes:
    length = HEADER_SIZE + len(meta) + len(payload)
    return struct.pack(">I", length) + HEADER.pack(frame_type, flags, request_id, len(meta)) + meta + payload


@dataclass
class Frame:
    type: int
    flags: int
    request_id: int
    meta: bytes
    payload: bytes
    length: int = 0
    _decoded: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return type_name(self.type)

    def fields(self) -> dict[str, Any]:
        """The meta section decoded with the message section 6 assigns to this type."""
        if self._decoded is None:
            message = META_OF_TYPE.get(self.type)
            if message is None:
                raise DecodeError(f"no meta message known for {self.name}")
            self._decoded = decode(message, self.meta)
        return self._decoded

    def __str__(self) -> str:
        try:
            shown = self.fields()
        except Exception:  # noqa: BLE001 - for display only
            shown = self.meta.hex()
        extra = f" payload={len(self.payload)}B" if self.payload else ""
        return f"{self.name} id={self.request_id} {shown}{extra}"


class ConnectionClosed(Exception):
    pass


class ParleyError(Exception):
    """An ERROR frame received as the answer to a request."""

    def __init__(self, frame: Frame):
        self.frame = frame
        meta = frame.fields()
        self.code = meta["code"]
        self.message = meta["message"]
        self.fatal = meta["fatal"]
        self.retry_after_ms = meta["retry_after_ms"]
        self.application_code = meta["application_code"]
        super().__init__(f"{ERROR_NAMES.get(self.code, 'code-%d' % self.code)} ({self.code}): {self.message}"
                         + (" [fatal]" if self.fatal else ""))


class CertificateMismatch(Exception):
    """The server's TLS certificate is not the pinned one."""


def normalize_fingerprint(text: str) -> str:
    """"sha256:HEX" in lowercase, from that form or openssl's "AB:CD:..." form."""
    text = text.strip().lower()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha256="):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return "sha256:" + text.replace(":", "")


class Connection:
    """One TCP connection. Blocking; frames that are not the awaited answer are kept in `events`
    (MESSAGE, receipts, ERRORs with request ID 0, ...). PINGs from the server are answered at once."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, max_frame_size: int = 1 << 20,
                 fingerprint: str | None = None, tls: bool = True, context: ssl.SSLContext | None = None):
        """Connects in TLS 1.3 (section 1.1) and checks that the server's certificate has the
        SHA-256 `fingerprint` ("sha256:HEX", as the server prints it); `tls=False` for a server
        started with --insecure-plaintext, or to see a TLS server refuse plaintext. `context`
        replaces the default TLS context (node links, section 22.1, present a certificate)."""
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.minimum_version = ssl.TLSVersion.TLSv1_3
                # The server is verified by its certificate's fingerprint, not by a CA chain.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                self.sock = context.wrap_socket(raw)
            except BaseException:
                raw.close()
                raise
            presented = "sha256:" + hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()
            self.certificate_fingerprint = presented
            if fingerprint is not None and presented != normalize_fingerprint(fingerprint):
                self.sock.close()
                raise CertificateMismatch(f"the server presented {presented}, not {fingerprint}")
        else:
            self.sock = raw
            self.certificate_fingerprint = None
        self.timeout = timeout
        # Accept a little more than the announced maximum (PROTOCOL.md section 21).
        self.max_frame_size = max_frame_size + 4096
        self.buffer = bytearray()
        self.next_request_id = 1
        self.events: deque[Frame] = deque()
        self.answers: dict[int, Frame] = {}
        self.closed = False
        self.server_pings_answered = 0
        self.hello_ok: dict[str, Any] | None = None

    # -- raw I/O

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame_type: int, request_id: int, meta: bytes = b"", payload: bytes = b"") -> None:
        self.send_raw(encode_frame(frame_type, request_id, meta, payload))

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as error:
            raise TimeoutError("no frame in time") from error
        except ConnectionResetError as error:
            self.closed = True
            raise ConnectionClosed("connection reset by the server") from error
        except ssl.SSLError as error:
            self.closed = True
            raise ConnectionClosed(f"TLS closed: {error}") from error
        if not chunk:
            self.closed = True
            if self.buffer:
                raise ConnectionClosed(f"connection closed inside a frame ({len(self.buffer)} bytes buffered)")
            raise ConnectionClosed("connection closed by the server")
        self.buffer += chunk

    def read_frame(self, timeout: float | None = None) -> Frame:
        """Reads the next frame off the socket, whatever it is (no PONG handling)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buffer) < 4:
            self._fill(deadline)
        (length,) = struct.unpack_from(">I", self.buffer, 0)
        # Check the length before buffering the frame (section 2.1).
        if length > self.max_frame_size:
            raise DecodeError(f"frame of {length} bytes exceeds our maximum {self.max_frame_size}")
        if length < HEADER_SIZE:
            raise DecodeError(f"frame length {length} is shorter than the header")
        while len(self.buffer) < 4 + length:
            self._fill(deadline)
        frame_type, flags, request_id, meta_length = HEADER.unpack_from(self.buffer, 4)
        if meta_length > length - HEADER_SIZE:
            raise DecodeError(f"meta length {meta_length} does not fit in a frame of {length} bytes")
        start = 4 + HEADER_SIZE
        meta = bytes(self.buffer[start:start + meta_length])
        payload = bytes(self.buffer[start + meta_length:4 + length])
        del self.buffer[:4 + length]
        return Frame(frame_type, flags, request_id, meta, payload, length)

    def next_frame(self, timeout: float | None = None) -> Frame:
        """The next frame other than a PING (server PINGs are answered with PONG here)."""
        while True:
            frame = self.read_frame(timeout)
            if frame.type == PING:
                nonce = decode("Ping", frame.meta)["nonce"]
                self.send_frame(PONG, frame.request_id, encode("Ping", {"nonce": nonce}))
                self.server_pings_answered += 1
                continue
            return frame

    # -- requests

    def new_request_id(self) -> int:
        request_id = self.next_request_id
        self.next_request_id = 1 if request_id == 0xFFFFFFFF else request_id + 1
        return request_id

    def wait_answer(self, request_id: int, timeout: float | None = None) -> Frame:
        """Waits for the answer (success or ERROR) with `request_id`; other frames go to `events`
        (answers to other requests to `answers`)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if request_id in self.answers:
                return self.answers.pop(request_id)
            frame = self.next_frame(max(deadline - time.monotonic(), 0.001))
            is_answer = frame.request_id != 0 and (frame.type & RESPONSE_BIT or frame.type in (ERROR, PONG))
            if is_answer:
                if frame.request_id == request_id:
                    return frame
                self.answers[frame.request_id] = frame
            else:
                self.events.append(frame)

    def request_frame(self, frame_type: int, values: dict[str, Any] | None = None, payload: bytes = b"",
                      request_id: int | None = None, timeout: float | None = None) -> Frame:
        """Sends a request and returns its answer frame (which may be an ERROR)."""
        message = META_OF_TYPE.get(frame_type, "Empty")
        request_id = self.new_request_id() if request_id is None else request_id
        self.send_frame(frame_type, request_id, encode(message, values), payload)
        return self.wait_answer(request_id, timeout)

    def request(self, frame_type: int, values: dict[str, Any] | None = None, payload: bytes = b"",
                timeout: float | None = None) -> dict[str, Any]:
        """Sends a request; returns the answer's decoded meta or raises ParleyError."""
        answer = self.request_frame(frame_type, values, payload, timeout=timeout)
        if answer.type == ERROR:
            raise ParleyError(answer)
        if answer.type != frame_type | RESPONSE_BIT:
            raise DecodeError(f"expected {type_name(frame_type | RESPONSE_BIT)}, got {answer.name}")
        return answer.fields()

    def next_event(self, timeout: float | None = None, types: tuple[int, ...] | None = None) -> Frame:
        """The next event (optionally of the given types; others stay queued)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for frame in list(self.events):
                if types is None or frame.type in types:
                    self.events.remove(frame)
                    return frame
            frame = self.next_frame(max(deadline - time.monotonic(), 0.001))
            if frame.request_id != 0 and (frame.type & RESPONSE_BIT or frame.type == ERROR):
                self.answers[frame.request_id] = frame
            else:
                self.events.append(frame)

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.closed = True

    # -- the protocol, one method per request (section 9)

    def hello(self, agent: str = "parley-py-interop/1", min_version: int = 1, max_version: int = 1,
              capabilities: list[str] = ()) -> dict[str, Any]:
        ok = self.request(HELLO, {"magic": "parley", "min_version": min_version,
                                  "max_version": max_version, "agent": agent, "capabilities": list(capabilities)})
        self.hello_ok = ok
        if ok["version"] != 1:
            raise DecodeError(f"the server chose version {ok['version']}")
        if ok["max_frame_size"]:
            self.max_frame_size = ok["max_frame_size"] + 4096
        return ok

    def register(self, user_name: str, password: str, requested_user_id: int = 0, **info: str) -> dict[str, Any]:
        return self.request(REGISTER, {"info": {"user_name": user_name, **info}, "password": password,
                                       "requested_user_id": requested_user_id})

    def logon(self, user_id: int, password: str) -> dict[str, Any]:
        return self.request(LOGON, {"user_id": user_id, "password": password})

    def logoff(self) -> dict[str, Any]:
        return self.request(LOGOFF)

    def user_exists(self, user_id: int) -> bool:
        return self.request(USER_EXISTS, {"user_id": user_id})["value"]

    def user_online(self, user_id: int) -> bool:
        return self.request(USER_ONLINE, {"user_id": user_id})["value"]

    def user_info(self, user_id: int) -> dict[str, Any]:
        return self.request(GET_USER_INFO, {"user_id": user_id})["user"]

    def find_user_ids(self, user_name: str) -> list[int]:
        return self.request(FIND_USER_ID, {"user_name": user_name})["user_ids"]

    def find_users(self, filters: list[tuple[int, int, str]] = (), online: int = ONLINE_ANY,
                   sort: int = USER_FIELD_UNSPECIFIED, descending: bool = False, limit: int = 0) -> dict[str, Any]:
        return self.request(FIND_USERS, {
            "filters": [{"field": f, "match": m, "value": v} for f, m, v in filters],
            "online": online, "sort": sort, "descending": descending, "limit": limit,
        })

    def update_user_info(self, **info: str) -> dict[str, Any]:
        return self.request(UPDATE_USER_INFO, {"info": info})["user"]

    def change_password(self, old: str, new: str) -> None:
        self.request(CHANGE_PASSWORD, {"old_password": old, "new_password": new})

    def send_message(self, recipients: list[int], body: bytes | str, message_id: int | None = None,
                     want_receipt: bool = False) -> tuple[int, list[dict[str, Any]]]:
        """Sends a text (str) or binary (bytes) message; returns (message ID, per-recipient results)."""
        message_id = message_id or random_message_id()
        kind = KIND_TEXT if isinstance(body, str) else KIND_BINARY
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        answer = self.request(SEND_MESSAGE, {
            "message_id": message_id, "recipients": recipients, "kind": kind,
            "sent_at_ms": int(time.time() * 1000), "want_receipt": want_receipt,
        }, payload)
        return message_id, answer["results"]

    def ack(self, refs: list[tuple[int, int]], request_id: int = 0) -> Frame | None:
        """Acknowledges (sender, message ID) pairs. With request ID 0 (the norm) no answer comes."""
        meta = encode("AckMessagesRequest", {"messages": [{"sender": s, "message_id": m} for s, m in refs]})
        self.send_frame(ACK_MESSAGES, request_id, meta)
        return self.wait_answer(request_id) if request_id else None

    # -- contacts and presence (section 23)

    def get_contacts(self) -> dict[str, Any]:
        return self.request(GET_CONTACTS)

    def add_contact(self, user_id: int, rule: int = DISPLAY_USER_NAME, custom_name: str = "") -> dict[str, Any]:
        return self.request(ADD_CONTACT, {"user_id": user_id, "display_rule": rule,
                                          "custom_name": custom_name})["contact"]

    def update_contact(self, user_id: int, rule: int, custom_name: str = "") -> dict[str, Any]:
        return self.request(UPDATE_CONTACT, {"user_id": user_id, "display_rule": rule,
                                             "custom_name": custom_name})["contact"]

    def remove_contact(self, user_id: int) -> None:
        self.request(REMOVE_CONTACT, {"user_id": user_id})

    def set_presence(self, state: int, text: str = "") -> None:
        self.request(SET_PRESENCE, {"state": state, "text": text})

    # -- custom commands (section 24)

    def send_command(self, name: str, payload: bytes = b"", recipient: int = 0, timeout_ms: int = 0,
                     fire_and_forget: bool = False, store_if_offline: bool = False,
                     timeout: float | None = None) -> tuple[int, bytes]:
        """SEND_COMMAND; returns (disposition, reply payload) or raises ParleyError."""
        answer = self.request_frame(SEND_COMMAND, {
            "name": name, "recipient": recipient, "timeout_ms": timeout_ms,
            "fire_and_forget": fire_and_forget, "store_if_offline": store_if_offline,
        }, payload, timeout=timeout)
        if answer.type == ERROR:
            raise ParleyError(answer)
        if answer.type != SEND_COMMAND | RESPONSE_BIT:
            raise DecodeError(f"expected SEND_COMMAND_OK, got {answer.name}")
        return answer.fields()["disposition"], answer.payload

    def reply_command(self, command_id: int, payload: bytes = b"", error_code: int = 0, application_code: int = 0,
                      text: str = "") -> Frame:
        """COMMAND_REPLY with a request ID; returns its answer (COMMAND_REPLY_OK or ERROR)."""
        return self.request_frame(COMMAND_REPLY, {"command_id": command_id, "error_code": error_code,
                                                  "application_code": application_code, "text": text}, payload)

    # -- message history (section 25)

    def search_history(self, **filters: Any) -> dict[str, Any]:
        """SEARCH_HISTORY with the SearchHistoryRequest fields given; returns the HistoryPage."""
        return self.request(SEARCH_HISTORY, filters)

    def ping(self, nonce: int) -> Frame:
        request_id = self.new_request_id()
        self.send_frame(PING, request_id, encode("Ping", {"nonce": nonce}))
        return self.wait_answer(request_id)


def random_message_id() -> int:
    while True:
        value = int.from_bytes(os.urandom(8), "big")
        if value:
            return value


class Inbox:
    """Client-side de-duplication of received messages by (sender, message ID) (section 11.6)."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self.seen: dict[tuple[int, int], None] = {}

    def is_new(self, sender: int, message_id: int) -> bool:
        key = (sender, message_id)
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > self.capacity:
            self.seen.pop(next(iter(self.seen)))
        return True
