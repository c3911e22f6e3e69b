#!/usr/bin/env python3
"""Helpers for the network-namespace lab (scripts/lab.sh). Standard library only.

  ping TARGET INTERVAL_S OUT      ICMP echo every INTERVAL_S (raw socket: root); appends
                                  "<wall ms> <seq>" per reply to OUT. Runs until killed.
  vippoll VIP INTERVAL_S OUT NS...  every INTERVAL_S, dumps the IPv4 addresses of every
                                  namespace NS (one rtnetlink socket per namespace, all dumps
                                  back to back, well under 1 ms) and appends
                                  "<wall ms> <holder,holder,...>" to OUT when the set of
                                  holders changes. Two holders in one sample are re-checked
                                  (the earlier-read host is read again after the later one) and,
                                  if confirmed, a line "<ms> DOUBLE a,b" is written.
  arpwatch VIP MY_IP IFACE INTERVAL_S WINDOW_S OUT
                                  every INTERVAL_S, broadcasts an ARP request "who-has VIP tell
                                  MY_IP" on IFACE (AF_PACKET: root) and collects the replies
                                  (op 2, sender VIP, target MY_IP) for WINDOW_S. Appends
                                  "<wall ms> <mac,mac|->" to OUT when the set of answering MACs
                                  changes, and "<ms> DOUBLE <mac>@<us>,<mac>@<us>" (reply delays
                                  after the send) when one request got replies from two MACs.
  overlaps VIP HOST=MONLOG...     reads `ip -ts monitor address` logs (one per host, taken at
                                  real-time priority) and turns every add and delete of VIP into
                                  exact holding intervals per host (the kernel's own events: no
                                  sampling, so a 1 ms overlap cannot slip between two samples).
                                  Prints "OVERLAP a,b <from> <to> <us>" for every instant two
                                  hosts held it (wall time, us of overlap) and exits 1 if any;
                                  else "OK <intervals>".
  gap REPLIES FROM_MS TO_MS       the longest gap (ms) between consecutive replies that spans
                                  any instant of [FROM_MS, TO_MS]; counts the window edges as
                                  replies are missing there. Prints "<gap_ms> <replies_in_window>".
"""
import ctypes
import os
import select
import socket
import struct
import sys
import time


def now_ms():
    return time.time_ns() // 1_000_000


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def cmd_ping(target, interval, out):
    interval = float(interval)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    seq = 0
    f = open(out, "a", buffering=1)
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            payload = struct.pack("!d", time.time())
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = checksum(hdr + payload)
            pkt = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
            try:
                sock.sendto(pkt, (target, 0))
            except OSError:
                pass  # e.g. no route / neighbour failure: counts as a lost reply
            next_send += interval
            if next_send < now:
                next_send = now + interval
        timeout = max(0.0, next_send - time.monotonic())
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            continue
        data, addr = sock.recvfrom(2048)
        ihl = (data[0] & 0x0F) * 4
        icmp = data[ihl:]
        if len(icmp) < 8:
            continue
        typ, _code, _c, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ == 0 and rid == ident and addr[0] == target:
            f.write("%d %d\n" % (now_ms(), rseq))


# --- rtnetlink address dump -------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
RTM_GETADDR = 22
RTM_NEWADDR = 20
NLM_F_REQUEST = 1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NLMSG_ERROR = 2
IFA_ADDRESS = 1
IFA_LOCAL = 2


def netns_socket(name):
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns " + name)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    if libc.setns(own, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back")
    os.close(fd)
    os.close(own)
    return s


_seq = [0]


def has_addr(sock, vip_bytes):
    _seq[0] += 1
    seq = _seq[0]
    msg = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    msg += struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
    sock.send(msg)
    found = False
    while True:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, typ, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                return found
            if mseq == seq:
                if typ == NLMSG_DONE or typ == NLMSG_ERROR:
                    return found
                if typ == RTM_NEWADDR:
                    a = off + 16 + 8
                    end = off + length
                    while a + 4 <= end:
                        alen, atyp = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atyp in (IFA_LOCAL, IFA_ADDRESS) and data[a + 4:a + alen] == vip_bytes:
                            found = True
                        a += (alen + 3) & ~3
            off += (length + 3) & ~3


def cmd_vippoll(vip, interval, out, *names):
    interval = float(interval)
    vip_bytes = socket.inet_aton(vip)
    # Log short names: "hacoord-lab-123-h2" -> "h2".
    socks = [(n.rsplit("-", 1)[-1], netns_socket(n)) for n in names]
    f = open(out, "a", buffering=1)
    last = None
    while True:
        t = now_ms()
        holders = [n for n, s in socks if has_addr(s, vip_bytes)]
        if len(holders) >= 2:
            # Re-read the hosts read before the last holder: still there => held at the same time.
            first = [n for n, s in socks if n in holders[:-1] and has_addr(s, vip_bytes)]
            if first:
                f.write("%d DOUBLE %s\n" % (t, ",".join(first + holders[-1:])))
        key = ",".join(holders)
        if key != last:
            f.write("%d %s\n" % (t, key if key else "-"))
            last = key
        time.sleep(interval)


ETH_P_ARP = 0x0806


def cmd_arpwatch(vip, my_ip, iface, interval, window, out):
    interval, window = float(interval), float(window)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    with open("/sys/class/net/%s/address" % iface) as fh:
        my_mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    vip_b, me_b = socket.inet_aton(vip), socket.inet_aton(my_ip)
    req = (b"\xff" * 6 + my_mac + struct.pack("!H", ETH_P_ARP)
           + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + my_mac + me_b + b"\0" * 6 + vip_b)
    fmt = lambda m: ":".join("%02x" % b for b in m)
    f = open(out, "a", buffering=1)
    last = None
    next_send = time.monotonic()
    while True:
        delay = next_send - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # Drop late replies to the previous request, then send and collect for WINDOW_S.
        while select.select([sock], [], [], 0)[0]:
            sock.recv(2048)
        next_send += interval
        if next_send < time.monotonic():
            next_send = time.monotonic() + interval
        t = now_ms()
        sent = time.monotonic()
        try:
            sock.send(req)
        except OSError:
            continue
        macs = {}
        end = sent + window
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(2048)
            if len(data) < 42 or data[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", data[20:22])[0]
            sha, spa, tpa = data[22:28], data[28:32], data[38:42]
            if op == 2 and spa == vip_b and tpa == me_b and sha not in macs:
                macs[sha] = int((time.monotonic() - sent) * 1e6)
        if len(macs) >= 2:
            f.write("%d DOUBLE %s\n" % (t, ",".join("%s@%d" % (fmt(m), us) for m, us in macs.items())))
        key = ",".join(sorted(fmt(m) for m in macs)) or "-"
        if key != last:
            f.write("%d %s\n" % (t, key))
            last = key


def cmd_gap(path, frm, to):
    frm, to = int(frm), int(to)
    times = []
    with open(path) as fh:
        for line in fh:
            p = line.split()
            if p:
                times.append(int(p[0]))
    times.sort()
    before = [t for t in times if t <= frm]
    inside = [t for t in times if frm < t < to]
    after = [t for t in times if t >= to]
    seq = ([before[-1]] if before else [frm]) + inside + ([after[0]] if after else [to])
    gap = max((b - a for a, b in zip(seq, seq[1:])), default=to - frm)
    print(gap, len(inside))


def parse_monitor(path, vip):
    """Holding intervals [(from_s, to_s)] of `vip` in one `ip -ts monitor address` log."""
    import datetime
    intervals, since = [], None
    needle = " inet %s/" % vip
    with open(path) as fh:
        for line in fh:
            if not line.startswith("[") or needle not in line:
                continue
            stamp, rest = line[1:].split("]", 1)
            t = datetime.datetime.fromisoformat(stamp).timestamp()
            if rest.lstrip().startswith("Deleted"):
                if since is not None:
                    intervals.append((since, t))
                since = None
            elif since is None:  # an add (a lifetime change of a held address repeats it)
                since = t
    if since is not None:
        intervals.append((since, float("inf")))
    return intervals


def cmd_overlaps(vip, *host_logs):
    held = {}
    for item in host_logs:
        host, path = item.split("=", 1)
        held[host] = parse_monitor(path, vip)
    bad = 0
    hosts = sorted(held)
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            for (a0, a1) in held[a]:
                for (b0, b1) in held[b]:
                    lo, hi = max(a0, b0), min(a1, b1)
                    if lo < hi:
                        bad += 1
                        print("OVERLAP %s,%s %.6f %.6f %d" % (a, b, lo, hi, (hi - lo) * 1e6
                                                                 if hi != float("inf") else -1))
    if bad:
        sys.exit(1)
    print("OK %d" % sum(len(v) for v in held.values()))


if __name__ == "__main__":
    cmds = {"ping": cmd_ping, "vippoll": cmd_vippoll, "arpwatch": cmd_arpwatch, "gap": cmd_gap,
            "overlaps": cmd_overlaps}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])
