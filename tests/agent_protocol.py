#!/usr/bin/env python3
"""zroam against systemd's password-agent protocol, spoken by an independent implementation
(this script, written from systemd's "Password Agents" document): as an agent answering
`zroam ask`'s published question, and as an asker whose question `zroam unlock` answers.

It runs in a private mount namespace with a tmpfs of its own on /run, so the host's real
agents never see its questions and nothing of the host's /run is touched.

usage: agent_protocol.py ZROAM_BINARY
"""
import configparser
import os
import socket
import struct
import subprocess
import sys
import time

DIR = "/run/systemd/ask-password"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def monotonic_us():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


def wait_for_ask(timeout=10):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        names = [n for n in os.listdir(DIR) if n.startswith("ask.")]
        if names:
            return os.path.join(DIR, names[0])
        time.sleep(0.05)
    return None


def read_ask(path):
    c = configparser.ConfigParser(interpolation=None)
    c.optionxform = str
    c.read(path)
    return dict(c["Ask"])


def agent_side(zroam):
    """This script is the agent; zroam asks."""
    p = subprocess.Popen([zroam, "ask", "--no-console", "--id", "lab:one", "--timeout", "60", "Passphrase for lab"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = wait_for_ask()
    check(path is not None, "zroam ask publishes an ask file")
    if not path:
        p.kill()
        return
    a = read_ask(path)
    check(a.get("PID") == str(p.pid), f"PID is the asker's ({a.get('PID')} vs {p.pid})")
    check(a.get("Message") == "Passphrase for lab" and a.get("Id") == "lab:one", f"Message and Id as asked: {a}")
    check(a.get("Echo") == "0" and a.get("AcceptCached") == "0", "no echo, no cached answers")
    not_after = int(a.get("NotAfter", "0"))
    check(monotonic_us() < not_after <= monotonic_us() + 61_000_000, f"NotAfter is CLOCK_MONOTONIC + 60 s ({not_after})")
    sock = a.get("Socket", "")
    check(os.path.exists(sock) and (os.stat(sock).st_mode & 0o777) == 0o600, f"the socket {sock} exists, root only")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A datagram that is no answer is ignored; the real one is taken.
    s.sendto(b"?junk", sock)
    s.sendto(b"+s3cret pass", sock)
    out, err = p.communicate(timeout=15)
    check(p.returncode == 0 and out == b"s3cret pass\n", f"zroam ask printed the agent's answer ({p.returncode}, {out!r}, {err!r})")
    check(not os.path.exists(path) and not os.path.exists(sock), "the ask file and socket are withdrawn")

    # "-" declines: the asker ends without an answer.
    p = subprocess.Popen([zroam, "ask", "--no-console", "--timeout", "60", "Second"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = wait_for_ask()
    if path:
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"-", read_ask(path)["Socket"])
    out, err = p.communicate(timeout=15)
    check(p.returncode == 1 and out == b"" and b"cancelled" in err, f"a cancel ends zroam ask with no answer ({err!r})")

    # The question lapses at its bound.
    t = time.monotonic()
    r = subprocess.run([zroam, "ask", "--no-console", "--timeout", "1", "Third"], capture_output=True, timeout=15)
    check(r.returncode == 1 and time.monotonic() - t < 5 and not os.listdir(DIR), f"an unanswered question lapses ({r.stderr!r})")


def publish(message, qid, not_after=None, pid=None):
    """This script asks: a socket with SO_PASSCRED and an ask file moved into place."""
    n = f"lab{os.getpid()}.{monotonic_us()}"
    path = os.path.join(DIR, "sck." + n)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    na = monotonic_us() + 60_000_000 if not_after is None else not_after
    text = (f"[Ask]\nPID={pid or os.getpid()}\nSocket={path}\nAcceptCached=0\nEcho=0\nNotAfter={na}\n"
            f"Message={message}\nId={qid}\n")
    tmp = os.path.join(DIR, ".tmp." + n)
    with open(tmp, "w") as f:
        f.write(text)
    ask = os.path.join(DIR, "ask." + n)
    os.rename(tmp, ask)
    return s, ask


def asker_side(zroam):
    """This script asks; zroam unlock answers."""
    s, ask = publish("Passphrase for disk lab", "cryptsetup:/dev/lab")
    stale, stale_ask = publish("Lapsed question", "lab:lapsed", not_after=1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone, gone_ask = publish("Asker gone", "lab:gone", pid=dead.pid)
    listed = subprocess.run([zroam, "unlock", "--list"], capture_output=True, text=True, timeout=15).stdout
    check(listed == "cryptsetup:/dev/lab\tPassphrase for disk lab\n", f"zroam unlock --list shows only the live question: {listed!r}")
    r = subprocess.run([zroam, "unlock", "--wait", "5"], input=b"pass word\n", capture_output=True, timeout=30)
    check(r.returncode == 0, f"zroam unlock answered ({r.returncode}, {r.stderr!r})")
    s.settimeout(5)
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    creds = [struct.unpack("iII", d[:12]) for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS]
    check(msg == b"+pass word", f"the datagram is + and the passphrase ({msg!r})")
    check(bool(creds) and creds[0][1] == 0, f"sent by root, as the asker checks ({creds})")
    for sock, path in ((s, ask), (stale, stale_ask), (gone, gone_ask)):
        sock.close()
        os.unlink(path)
    for n in os.listdir(DIR):
        os.unlink(os.path.join(DIR, n))
    r = subprocess.run([zroam, "unlock", "--wait", "1"], input=b"x\n", capture_output=True, timeout=15)
    check(r.returncode == 1 and b"no question" in r.stderr, f"with nothing asked, zroam unlock says so ({r.stderr!r})")


def main():
    zroam = os.path.abspath(sys.argv[1])
    if os.environ.get("ZROAM_PROTOCOL_NS") != "1":
        env = dict(os.environ, ZROAM_PROTOCOL_NS="1")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, __file__, zroam],
                              env=env).returncode
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "zroam-protocol", "/run"], check=True)
    os.makedirs(DIR)
    agent_side(zroam)
    asker_side(zroam)
    print(f"agent protocol: {'all passed' if not failures else str(len(failures)) + ' failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
