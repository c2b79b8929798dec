#!/usr/bin/env python3
"""Writes the seed corpus tests/fuzz/corpus/proto/: whole conversations in
the agent protocol (docs/protocol.md), one direction per file. Run again
after changing the wire format; test_proto replays these in the unit suite."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
T = dict(HELLO=1, EXEC=16, WRITE_FILE=17, READ_FILE=18, TCP_CONNECT=19, PING=20, SET_TIME=21,
         ADD_ENTROPY=22, QUIESCE=23, PROBE_LISTEN=24, HEARTBEAT=25, SHUTDOWN=26, SIGNAL_WORKLOAD=27, RESUME=28,
         STDIN=32, STDOUT=33, STDERR=34, RESIZE=35, SIGNAL=36, FILE=37, DATA=38, ERROR=48, OK=49,
         PONG=50, STARTED=51, EXIT=52, FILE_INFO=53, PROBE_RESULT=54, COUNTER=55, GUEST_CONFIG=64)
EOF_FLAG = 1


def frame(t, payload=b"", flags=0):
    return struct.pack("<BBHI", T[t], flags, 0, len(payload)) + payload


def u32(v):
    return struct.pack("<I", v)


def s(text):
    b = text.encode() + b"\0"
    return u32(len(b)) + b


def strv(items):
    return u32(len(items)) + b"".join(s(i) for i in items)


def hello(caps=0):
    return frame("HELLO", struct.pack("<III", 0x47414D53, 3, caps))


def exec_req(cmds, env=(), cwd="", user="", tty=False, rows=0, cols=0, timeout=0, nfiles=0):
    p = struct.pack("<IHHI", 1 if tty else 0, rows, cols, timeout) + s(cwd) + s(user) + strv(env)
    p += u32(len(cmds)) + b"".join(strv(c) for c in cmds) + u32(nfiles)
    return frame("EXEC", p)


def config():
    p = u32(3) + s("web") + s("/dev/vda") + s("ext4") + strv(["PATH=/bin", "A=b"])
    p += strv(["httpd", "-f"]) + s("/srv") + s("www:www") + u32(15)
    p += u32(1) + s("/dev/vdb") + s("/data") + s("") + u32(0)
    p += bytes([10, 0, 2, 15, 10, 0, 2, 2, 10, 0, 2, 3, 24]) + u32(1028)
    return frame("GUEST_CONFIG", p)


def write(name, blob):
    d = os.path.join(HERE, "corpus", "proto")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    write("exec-host", hello() + exec_req([["cat", "/tmp/a"], ["sh", "-c", "echo $X"]], env=["X=1"], cwd="/tmp",
                                          user="1000:1000", timeout=5000, nfiles=1)
          + frame("FILE", s("/tmp/a") + u32(0o644)) + frame("DATA", b"staged") + frame("DATA", b"", EOF_FLAG)
          + frame("STDIN", b"input") + frame("RESIZE", struct.pack("<HH", 50, 132)) + frame("SIGNAL", u32(2))
          + frame("STDIN", b"", EOF_FLAG))
    write("exec-tty", hello() + exec_req([["stty", "size"]], tty=True, rows=24, cols=80))
    write("exec-agent", hello(3) + frame("STARTED", u32(42)) + frame("STDOUT", b"out\n") + frame("STDERR", b"err\n")
          + frame("STDOUT", b"", EOF_FLAG) + frame("STDERR", b"", EOF_FLAG)
          + frame("EXIT", struct.pack("<BBHiIQQ", 1, 1, 0, 9, 0, 123456789, 2048)))
    write("files", hello() + frame("WRITE_FILE", s("/etc/x") + u32(0o600)) + frame("DATA", b"x" * 100)
          + frame("DATA", b"", EOF_FLAG) + frame("READ_FILE", s("/etc/hostname")))
    write("files-agent", hello() + frame("OK") + frame("FILE_INFO", struct.pack("<QI", 5, 0o100644))
          + frame("DATA", b"hello") + frame("DATA", b"", EOF_FLAG)
          + frame("ERROR", u32(2) + s("open /x: No such file or directory")))
    write("requests", hello() + frame("PING") + frame("SET_TIME", struct.pack("<Q", 1700000000 * 10**9))
          + frame("ADD_ENTROPY", bytes(range(64))) + frame("QUIESCE", u32(10)) + frame("PROBE_LISTEN", u32(80))
          + frame("HEARTBEAT") + frame("SHUTDOWN", u32(5000)) + frame("SIGNAL_WORKLOAD", u32(15))
          + frame("TCP_CONNECT", u32(6379)))
    write("resume", hello() + frame("RESUME", struct.pack("<Q", 1700000000 * 10**9) + bytes(range(64))))
    write("replies", frame("PONG", struct.pack("<QQ", 1, 2)) + frame("PROBE_RESULT", struct.pack("<BBH", 1, 0, 80))
          + frame("COUNTER", struct.pack("<Q", 7)) + frame("OK"))
    write("config", config())


if __name__ == "__main__":
    main()
